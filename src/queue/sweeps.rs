//! Sweeps: many jobs queued by one request, kept together for their report.

use super::{
    create_job_in, decode, lock_queued_count, on_db, JobRecord, JobRow, NewJob, OverLimit, Pool, QueueError,
    JOB_COLUMNS,
};
use serde_json::Value;
use sqlx::FromRow;

#[derive(Debug, Clone)]
pub struct SweepRow {
    pub seq: i64,
    pub id: String,
    pub owner_id: i64,
    /// The owner's user name.
    pub owner: String,
    pub name: Option<String>,
    /// The request that made it.
    pub definition: Value,
    pub created_at: i64,
    /// The preset (assignment) it ran, if any.
    pub preset: Option<String>,
}

/// A sweep row as stored.
type SweepRecord = (i64, String, i64, String, Option<String>, String, i64, Option<String>);

const SWEEP_COLUMNS: &str = "seq, id, owner_id, (SELECT name FROM users WHERE users.id = sweeps.owner_id) AS owner, \
     name, definition, created_at, preset";

fn sweep_row(
    (seq, id, owner_id, owner, name, definition, created_at, preset): SweepRecord,
) -> Result<SweepRow, QueueError> {
    let definition = decode(&definition, || format!("sweep {id}'s definition"))?;
    Ok(SweepRow { seq, id, owner_id, owner, name, definition, created_at, preset })
}

/// One job of a sweep to create: the job, its point of the grid, its report sections.
pub struct NewSweepJob<'a> {
    pub job: NewJob<'a>,
    pub point: String,
    pub sections: String,
    /// Whether the sweep's early-stopping rule watches it.
    pub trial: bool,
}

/// A sweep to create: its row, and the Idempotency-Key (with the request's hash) if given.
pub struct NewSweep<'a> {
    pub id: &'a str,
    pub owner_id: i64,
    pub name: Option<&'a str>,
    pub definition: &'a str,
    /// The preset it runs, if any (what the class view finds it by).
    pub preset: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub now: i64,
}

/// What `create_sweep` did.
#[derive(Debug, PartialEq, Eq)]
pub enum SweepCreated {
    /// The sweep and its jobs are queued.
    New,
    /// The idempotency key was used before with the same request: that sweep's id.
    Existing(String),
    /// The idempotency key was used before with another request.
    KeyConflict,
    /// It would take the owner past the limit: nothing was queued.
    OverLimit(OverLimit),
}

/// Creates the sweep and all its jobs in one transaction: all are queued, or none (when
/// they would take the owner past `max_queued` queued jobs). A retried request (the same
/// idempotency key and body) gets its sweep back, even at the limit.
pub async fn create_sweep(
    pool: &Pool,
    sweep: &NewSweep<'_>,
    jobs: Vec<NewSweepJob<'_>>,
    max_queued: i64,
) -> Result<SweepCreated, QueueError> {
    const SWEEP: &str = "INSERT INTO sweeps (id, owner_id, name, definition, created_at, idempotency_key, \
         request_hash, preset) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    const JOB: &str =
        "INSERT INTO sweep_jobs (sweep_id, job_id, position, point, sections, trial) VALUES (?, ?, ?, ?, ?, ?)";
    const KEYED: &str = "SELECT id, request_hash FROM sweeps WHERE owner_id = ? AND idempotency_key = ?";
    let owner_id = sweep.owner_id;
    let mut tx = pool.begin_write().await?;
    let queued = lock_queued_count(&mut tx, owner_id).await?;
    if let Some(key) = sweep.idempotency_key {
        let existing: Option<(String, Option<String>)> = on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(KEYED))
            .bind(owner_id)
            .bind(key)
            .fetch_optional(&mut **t)
            .await?);
        if let Some((id, hash)) = existing {
            tx.rollback().await?;
            return Ok(if hash.as_deref() == Some(sweep.request_hash) {
                SweepCreated::Existing(id)
            } else {
                SweepCreated::KeyConflict
            });
        }
    }
    if queued.saturating_add(jobs.len() as i64) > max_queued {
        tx.rollback().await?;
        return Ok(SweepCreated::OverLimit(OverLimit { queued }));
    }
    let id = sweep.id;
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SWEEP))
        .bind(id)
        .bind(owner_id)
        .bind(sweep.name)
        .bind(sweep.definition)
        .bind(sweep.now)
        .bind(sweep.idempotency_key)
        .bind(sweep.request_hash)
        .bind(sweep.preset)
        .execute(&mut **t)
        .await?
        .rows_affected());
    for (position, j) in jobs.iter().enumerate() {
        create_job_in(&mut tx, &j.job).await?;
        on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(JOB))
            .bind(id)
            .bind(j.job.id)
            .bind(position as i64)
            .bind(&j.point)
            .bind(&j.sections)
            .bind(j.trial)
            .execute(&mut **t)
            .await?
            .rows_affected());
    }
    tx.commit().await?;
    Ok(SweepCreated::New)
}

pub async fn get_sweep(pool: &Pool, id: &str) -> Result<Option<SweepRow>, QueueError> {
    let sql = format!("SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = ?");
    let record: Option<SweepRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(id).fetch_optional(p).await?);
    record.map(sweep_row).transpose()
}

/// The ids of the sweeps whose id starts with `prefix` (at most two: enough to tell a unique
/// prefix from an ambiguous one). N.B.: the prefix must be hex digits and dashes, so it
/// holds no LIKE wildcard.
pub async fn ids_with_prefix(pool: &Pool, prefix: &str) -> Result<Vec<String>, QueueError> {
    debug_assert!(prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    const SQL: &str = "SELECT id FROM sweeps WHERE id LIKE ? ORDER BY seq LIMIT 2";
    let pattern = format!("{}%", prefix.to_ascii_lowercase());
    let ids: Vec<(String,)> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(&pattern).fetch_all(p).await?);
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Newest first, of one owner (or everyone's).
pub async fn list_sweeps(pool: &Pool, owner: Option<i64>) -> Result<Vec<SweepRow>, QueueError> {
    let sql =
        format!("SELECT {SWEEP_COLUMNS} FROM sweeps WHERE (?1 IS NULL OR owner_id = ?1) ORDER BY seq DESC LIMIT 200");
    let records: Vec<SweepRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(owner).fetch_all(p).await?);
    records.into_iter().map(sweep_row).collect()
}

/// Every student's sweep of a preset (an assignment's submissions; an instructor's or an
/// admin's own runs of it are not the class's): each owner's newest first, owners in name
/// order; one owner's only when `owner` is given.
pub async fn preset_sweeps(pool: &Pool, preset: &str, owner: Option<i64>) -> Result<Vec<SweepRow>, QueueError> {
    let sql = format!(
        "SELECT {SWEEP_COLUMNS} FROM sweeps WHERE preset = ?1 AND (?2 IS NULL OR owner_id = ?2) \
         AND owner_id IN (SELECT id FROM users WHERE role = 'student') ORDER BY owner, seq DESC"
    );
    let records: Vec<SweepRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(preset).bind(owner).fetch_all(p).await?);
    records.into_iter().map(sweep_row).collect()
}

/// How many sweeps there are (with the last event, what says the class view changed).
pub async fn count_sweeps(pool: &Pool) -> Result<i64, QueueError> {
    Ok(on_db!(Pool, pool, |p, _d| sqlx::query_scalar("SELECT COUNT(*) FROM sweeps").fetch_one(p).await?))
}

/// (sweep id, status, jobs) of one owner's sweeps (or everyone's): each sweep's progress.
pub async fn sweep_status_counts(pool: &Pool, owner: Option<i64>) -> Result<Vec<(String, String, i64)>, QueueError> {
    const SQL: &str = "SELECT sw.id, j.status, COUNT(*) FROM sweeps sw JOIN sweep_jobs s ON s.sweep_id = sw.id \
         JOIN jobs j ON j.id = s.job_id WHERE (?1 IS NULL OR sw.owner_id = ?1) GROUP BY sw.id, j.status";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(owner).fetch_all(p).await?))
}

/// A sweep's job with its point of the grid and its report sections.
pub struct SweepJob {
    pub job: JobRow,
    /// The settings this job varies (a JSON object).
    pub point: Value,
    /// (section key, label) of each report section it is in.
    pub sections: Vec<(String, String)>,
    /// Whether it is a trial of the sweep's search (or a grid job under its early stopping).
    pub trial: bool,
    /// Its owner resumed it by hand after it stopped early: its rule judges it no more.
    pub resumed: bool,
}

/// Every epoch of every job of a sweep, by job, in epoch order: one query for a whole
/// sweep's curves.
pub async fn sweep_metrics(
    pool: &Pool,
    sweep_id: &str,
) -> Result<std::collections::HashMap<String, Vec<crate::job::EpochMetrics>>, QueueError> {
    const SQL: &str = "SELECT e.job_id, e.epoch, e.metrics FROM epochs e JOIN sweep_jobs s ON s.job_id = e.job_id \
         WHERE s.sweep_id = ? ORDER BY e.job_id, e.epoch";
    let rows: Vec<(String, i64, String)> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(sweep_id).fetch_all(p).await?);
    let mut out: std::collections::HashMap<String, Vec<crate::job::EpochMetrics>> = Default::default();
    for (job, epoch, m) in rows {
        let metrics = decode(&m, || format!("job {job}'s epoch {epoch}"))?;
        out.entry(job).or_default().push(metrics);
    }
    Ok(out)
}

pub async fn sweep_jobs(pool: &Pool, sweep_id: &str) -> Result<Vec<SweepJob>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, s.point AS point, s.sections AS sections, s.trial AS trial, s.resumed AS resumed FROM sweep_jobs s JOIN jobs ON jobs.id = s.job_id \
         WHERE s.sweep_id = ? ORDER BY s.position"
    );
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        job: JobRecord,
        point: String,
        sections: String,
        trial: bool,
        resumed: bool,
    }
    let rows: Vec<Row> = on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(sweep_id).fetch_all(p).await?);
    rows.into_iter()
        .map(|r| {
            let job = JobRow::try_from(r.job)?;
            let point = decode(&r.point, || format!("job {}'s point in sweep {sweep_id}", job.id))?;
            let sections = decode(&r.sections, || format!("job {}'s sections in sweep {sweep_id}", job.id))?;
            Ok(SweepJob { job, point, sections, trial: r.trial, resumed: r.resumed })
        })
        .collect()
}
