//! Each job's latest checkpoint, kept in the database so that a worker on any machine can
//! resume a job whose machine died (the largest model with its momentum is about 3 MB).

use super::{on_db, Lease, Pool, QueueError};

impl Lease {
    /// Replaces the job's checkpoint with the state after `epoch`, fenced like every worker
    /// write; false when the lease is lost (nothing written).
    pub async fn save_checkpoint(&self, pool: &Pool, epoch: i64, data: &[u8], now: i64) -> Result<bool, QueueError> {
        save_checkpoint(pool, self, epoch, data, now).await
    }
}

async fn save_checkpoint(pool: &Pool, lease: &Lease, epoch: i64, data: &[u8], now: i64) -> Result<bool, QueueError> {
    const UPSERT: &str = "INSERT INTO checkpoints (job_id, epoch, data, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (job_id) DO UPDATE SET epoch = excluded.epoch, data = excluded.data, updated_at = excluded.updated_at";
    let Some(mut tx) = lease.begin_fenced(pool, "attempt = attempt", &[]).await? else { return Ok(false) };
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(UPSERT))
        .bind(&lease.id)
        .bind(epoch)
        .bind(data)
        .bind(now)
        .execute(&mut **t)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(true)
}

/// `job`'s latest checkpoint: (epoch, safetensors bytes).
pub async fn get_checkpoint(pool: &Pool, job: &str) -> Result<Option<(i64, Vec<u8>)>, QueueError> {
    const SQL: &str = "SELECT epoch, data FROM checkpoints WHERE job_id = ?";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(job).fetch_optional(p).await?))
}

/// Drops the checkpoints of jobs that finished before `before` (ms since the epoch): their
/// weights stop being downloadable, nothing else changes. Returns (checkpoints, bytes) freed.
pub async fn drop_checkpoints_before(pool: &Pool, before: i64) -> Result<(i64, i64), QueueError> {
    const WHICH: &str = "job_id IN (SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled', \
         'stopped_early') AND finished_at < ?)";
    let mut tx = pool.begin_write().await?;
    let sizes = format!("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM checkpoints WHERE {WHICH}");
    let (n, bytes): (i64, i64) =
        on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(&sizes)).bind(before).fetch_one(&mut **t).await?);
    let delete = format!("DELETE FROM checkpoints WHERE {WHICH}");
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&delete)).bind(before).execute(&mut **t).await?.rows_affected());
    tx.commit().await?;
    Ok((n, bytes))
}

/// What `drop_jobs_before` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub jobs: i64,
    pub sweeps: i64,
    pub checkpoint_bytes: i64,
}

/// Drops whole jobs finished before `before` (ms since the epoch): their rows, epochs and
/// checkpoints. A sweep goes with its jobs only when every one of them qualifies; a job of a
/// sweep that stays is kept, so a report never loses a row.
pub async fn drop_jobs_before(pool: &Pool, before: i64) -> Result<Dropped, QueueError> {
    const OLD: &str = "j.status IN ('succeeded', 'failed', 'cancelled', 'stopped_early') AND j.finished_at < ?";
    let whole_sweeps = format!(
        "SELECT s.id FROM sweeps s WHERE NOT EXISTS (SELECT 1 FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id \
         WHERE sj.sweep_id = s.id AND NOT ({OLD}))"
    );
    let old_jobs = format!("SELECT j.id FROM jobs j WHERE {OLD} AND j.id NOT IN (SELECT job_id FROM sweep_jobs)");
    let mut tx = pool.begin_write().await?;
    let n_sweeps: i64 =
        on_db!(Tx, &mut tx, |t, d| sqlx::query_scalar(&d.sql(&format!("SELECT COUNT(*) FROM ({whole_sweeps}) w")))
            .bind(before)
            .fetch_one(&mut **t)
            .await?);
    // N.B.: a search's decisions go with its sweep (they name its jobs).
    let decisions = format!("DELETE FROM trial_decisions WHERE sweep_id IN ({whole_sweeps})");
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&decisions)).bind(before).execute(&mut **t).await?.rows_affected());
    let unlink = format!("DELETE FROM sweep_jobs WHERE sweep_id IN ({whole_sweeps})");
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&unlink)).bind(before).execute(&mut **t).await?.rows_affected());
    const ORPHANS: &str = "DELETE FROM sweeps WHERE id NOT IN (SELECT sweep_id FROM sweep_jobs)";
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(ORPHANS)).execute(&mut **t).await?.rows_affected());
    let counts = format!(
        "SELECT COUNT(*), COALESCE((SELECT SUM(LENGTH(data)) FROM checkpoints WHERE job_id IN ({old_jobs})), 0) \
         FROM ({old_jobs}) o"
    );
    let (n_jobs, bytes): (i64, i64) = on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(&counts))
        .bind(before)
        .bind(before)
        .fetch_one(&mut **t)
        .await?);
    for table in ["epochs", "checkpoints", "events"] {
        let delete = format!("DELETE FROM {table} WHERE job_id IN ({old_jobs})");
        on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&delete)).bind(before).execute(&mut **t).await?.rows_affected());
    }
    let delete = format!("DELETE FROM jobs WHERE id IN ({old_jobs})");
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&delete)).bind(before).execute(&mut **t).await?.rows_affected());
    tx.commit().await?;
    Ok(Dropped { jobs: n_jobs, sweeps: n_sweeps, checkpoint_bytes: bytes })
}
