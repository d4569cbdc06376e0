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
    const WHICH: &str = "job_id IN (SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') \
         AND finished_at < ?)";
    let mut tx = pool.begin_write().await?;
    let sizes = format!("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM checkpoints WHERE {WHICH}");
    let (n, bytes): (i64, i64) =
        on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(&sizes)).bind(before).fetch_one(&mut **t).await?);
    let delete = format!("DELETE FROM checkpoints WHERE {WHICH}");
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(&delete)).bind(before).execute(&mut **t).await?.rows_affected());
    tx.commit().await?;
    Ok((n, bytes))
}
