//! Sweeps: many jobs queued by one request, kept together for their report.

use super::{create_job_in, lock_queued_count, on_db, JobRow, NewJob, OverLimit, Pool, QueueError, JOB_COLUMNS};
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct SweepRow {
    pub seq: i64,
    pub id: String,
    pub owner_id: i64,
    pub name: Option<String>,
    pub definition: String,
    pub created_at: i64,
}

/// One job of a sweep to create: the job, its point of the grid, its report sections.
pub struct NewSweepJob<'a> {
    pub job: NewJob<'a>,
    pub point: String,
    pub sections: String,
}

/// Creates the sweep and all its jobs in one transaction: all are queued, or none (when
/// they would take the owner past `max_queued` queued jobs).
#[allow(clippy::too_many_arguments)]
pub async fn create_sweep(
    pool: &Pool,
    id: &str,
    owner_id: i64,
    name: Option<&str>,
    definition: &str,
    jobs: Vec<NewSweepJob<'_>>,
    now: i64,
    max_queued: i64,
) -> Result<Result<(), OverLimit>, QueueError> {
    const SWEEP: &str = "INSERT INTO sweeps (id, owner_id, name, definition, created_at) VALUES (?, ?, ?, ?, ?)";
    const JOB: &str = "INSERT INTO sweep_jobs (sweep_id, job_id, position, point, sections) VALUES (?, ?, ?, ?, ?)";
    let mut tx = pool.begin_write().await?;
    let queued = lock_queued_count(&mut tx, owner_id).await?;
    if queued + jobs.len() as i64 > max_queued {
        tx.rollback().await?;
        return Ok(Err(OverLimit { queued }));
    }
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SWEEP))
        .bind(id)
        .bind(owner_id)
        .bind(name)
        .bind(definition)
        .bind(now)
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
            .execute(&mut **t)
            .await?
            .rows_affected());
    }
    tx.commit().await?;
    Ok(Ok(()))
}

pub async fn get_sweep(pool: &Pool, id: &str) -> Result<Option<SweepRow>, QueueError> {
    const SQL: &str = "SELECT seq, id, owner_id, name, definition, created_at FROM sweeps WHERE id = ?";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(id).fetch_optional(p).await?))
}

/// Newest first, of one owner (or everyone's).
pub async fn list_sweeps(pool: &Pool, owner: Option<i64>) -> Result<Vec<SweepRow>, QueueError> {
    const SQL: &str = "SELECT seq, id, owner_id, name, definition, created_at FROM sweeps \
         WHERE (?1 IS NULL OR owner_id = ?1) ORDER BY seq DESC LIMIT 200";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(owner).fetch_all(p).await?))
}

/// (sweep id, status, jobs) of one owner's sweeps (or everyone's): each sweep's progress.
pub async fn sweep_status_counts(pool: &Pool, owner: Option<i64>) -> Result<Vec<(String, String, i64)>, QueueError> {
    const SQL: &str = "SELECT sw.id, j.status, COUNT(*) FROM sweeps sw JOIN sweep_jobs s ON s.sweep_id = sw.id \
         JOIN jobs j ON j.id = s.job_id WHERE (?1 IS NULL OR sw.owner_id = ?1) GROUP BY sw.id, j.status";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(owner).fetch_all(p).await?))
}

/// A sweep's job with its point and sections.
pub struct SweepJob {
    pub job: JobRow,
    pub point: String,
    pub sections: String,
}

pub async fn sweep_jobs(pool: &Pool, sweep_id: &str) -> Result<Vec<SweepJob>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, s.point AS point, s.sections AS sections FROM sweep_jobs s JOIN jobs ON jobs.id = s.job_id \
         WHERE s.sweep_id = ? ORDER BY s.position"
    );
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        job: JobRow,
        point: String,
        sections: String,
    }
    let rows: Vec<Row> = on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(sweep_id).fetch_all(p).await?);
    Ok(rows.into_iter().map(|r| SweepJob { job: r.job, point: r.point, sections: r.sections }).collect())
}
