//! A search's early-stopping decisions: made once per trial and epoch, in the transaction
//! that records them, and kept (a restart repeats none of them, and one already made is
//! answered again, not made anew).

use super::{decode, on_db, Lease, Pool, QueueError, Tx};
use crate::job::EpochMetrics;
use crate::search::{asha_promotes, median_stops, EarlyStop};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One early-stopping decision about one trial after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub job_id: String,
    /// The epoch the decision followed.
    pub epoch: u32,
    /// `asha`, `median` or `diverged`.
    pub rule: String,
    /// ASHA's rung (0 = the first), else `None`.
    pub rung: Option<u32>,
    /// The rule's metric at that epoch (`None` when not finite).
    pub value: Option<f64>,
    /// Whether it goes on.
    pub promoted: bool,
    /// The decision, in words ("rung 1 (epoch 3): test_acc 0.412 ranks 2 of 5; the top 2 go on").
    pub reason: String,
    pub decided_at: i64,
}

type DecisionRecord = (String, i64, String, Option<i64>, Option<f64>, bool, String, i64);

const COLUMNS: &str = "job_id, epoch, rule, rung, value, promoted, reason, decided_at";

fn decision((job_id, epoch, rule, rung, value, promoted, reason, decided_at): DecisionRecord) -> Decision {
    let (epoch, rung) = (epoch.clamp(0, u32::MAX.into()) as u32, rung.map(|r| r.clamp(0, u32::MAX.into()) as u32));
    Decision { job_id, epoch, rule, rung, value, promoted, reason, decided_at }
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

impl Lease {
    /// After this attempt recorded `metrics` for `epoch`: whether the job's sweep's
    /// early-stopping rule lets it go on. `None` when no rule judges this epoch (the job is
    /// no trial, the epoch is no rung, too few others to compare) or the lease is lost.
    /// Decisions of one sweep are made one at a time (SQLite's write lock; the sweep's row
    /// locked on PostgreSQL), so "the trials at this rung so far" is exact.
    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %self.id, epoch))]
    pub async fn decide(&self, pool: &Pool, metrics: &EpochMetrics, now: i64) -> Result<Option<Decision>, QueueError> {
        let epoch = metrics.epoch;
        let Some(mut tx) = self.begin_fenced(pool, "lease_expires_at = lease_expires_at", &[]).await? else {
            return Ok(None);
        };
        let made = decide_in(&mut tx, &self.id, metrics, now).await;
        match made {
            Ok(d) => {
                tx.commit().await?;
                if let Some(d) = &d {
                    tracing::info!(job.id = %self.id, epoch, promoted = d.promoted, reason = %d.reason, "early-stopping decision");
                }
                Ok(d)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }
}

async fn decide_in(tx: &mut Tx, job: &str, m: &EpochMetrics, now: i64) -> Result<Option<Decision>, QueueError> {
    const TRIAL: &str = "SELECT sj.sweep_id, sw.definition, j.epochs_total FROM sweep_jobs sj \
         JOIN sweeps sw ON sw.id = sj.sweep_id JOIN jobs j ON j.id = sj.job_id \
         WHERE sj.job_id = ? AND sj.trial = TRUE AND sj.resumed = FALSE";
    let trial: Option<(String, String, i64)> =
        on_db!(Tx, &mut *tx, |t, d| sqlx::query_as(&d.sql(TRIAL)).bind(job).fetch_optional(&mut **t).await?);
    let Some((sweep, definition, epochs_total)) = trial else { return Ok(None) };
    // N.B.: one sweep's decisions in turn (SQLite's IMMEDIATE transaction already holds the
    // whole database).
    let lock = "SELECT id FROM sweeps WHERE id = ? FOR UPDATE";
    on_db!(Tx, &mut *tx, |t, d| if d == super::Dialect::Postgres {
        sqlx::query(&d.sql(lock)).bind(&sweep).fetch_optional(&mut **t).await?;
    });
    let epoch = i64::from(m.epoch);
    // N.B.: the decision about this epoch if one was made, else one that stopped the trial
    // at an earlier epoch (a worker that could not read it at admission trained on): a trial
    // is stopped once, and stays stopped.
    let existing = format!(
        "SELECT {COLUMNS} FROM trial_decisions WHERE job_id = ? AND (epoch = ? OR promoted = FALSE) \
         ORDER BY epoch LIMIT 1"
    );
    let known: Option<DecisionRecord> = on_db!(Tx, &mut *tx, |t, d| sqlx::query_as(&d.sql(&existing))
        .bind(job)
        .bind(epoch)
        .fetch_optional(&mut **t)
        .await?);
    if let Some(known) = known {
        return Ok(Some(decision(known)));
    }
    let definition: Value = decode(&definition, || format!("sweep {sweep}'s definition"))?;
    let Some(rule) = crate::sweep::early_stop_of(&definition) else { return Ok(None) };
    let metric = rule.metric();
    let value = metric.of(m);
    let (rule_name, rung, promoted, reason) = if epoch >= epochs_total {
        // N.B.: its last epoch: it ends anyway, as succeeded.
        return Ok(None);
    } else if m.diverged {
        (
            "diverged",
            None,
            false,
            format!("its loss was not finite at epoch {}: a diverged trial stops at once", m.epoch),
        )
    } else {
        match rule {
            EarlyStop::Asha { reduction, .. } => {
                let Some(k) =
                    rule.rungs(epochs_total.clamp(0, u32::MAX.into()) as u32).iter().position(|&r| r == m.epoch)
                else {
                    return Ok(None);
                };
                let Some(v) = value else {
                    let why = format!("rung {k} (epoch {}): its {} was not finite", m.epoch, metric.as_str());
                    return record(tx, &sweep, job, m.epoch, "asha", Some(k as u32), None, false, why, now)
                        .await
                        .map(Some);
                };
                const OTHERS: &str = "SELECT value FROM trial_decisions WHERE sweep_id = ? AND rule = 'asha' \
                     AND epoch = ? AND job_id <> ? AND value IS NOT NULL";
                let others: Vec<f64> = on_db!(Tx, &mut *tx, |t, d| sqlx::query_scalar(&d.sql(OTHERS))
                    .bind(&sweep)
                    .bind(epoch)
                    .bind(job)
                    .fetch_all(&mut **t)
                    .await?);
                let (on, rank, n, places) = asha_promotes(metric, v, &others, reduction);
                let go = if places == 1 { "the best goes on".to_string() } else { format!("the top {places} go on") };
                let reason = format!(
                    "rung {k} (epoch {}): {} {} ranks {rank} of {n} so far; {go}{}",
                    m.epoch,
                    metric.as_str(),
                    fmt(v),
                    if on { "" } else { ": stopped" }
                );
                ("asha", Some(k as u32), on, reason)
            }
            EarlyStop::Median { grace_epochs, min_trials, .. } => {
                if m.epoch < grace_epochs {
                    return Ok(None);
                }
                // Every trial's rows up to this epoch: its own best, the others' running means.
                const ROWS: &str =
                    "SELECT e.job_id, e.metrics FROM epochs e JOIN sweep_jobs sj ON sj.job_id = e.job_id \
                     WHERE sj.sweep_id = ? AND sj.trial = TRUE AND e.epoch <= ?";
                let rows: Vec<(String, String)> = on_db!(Tx, &mut *tx, |t, d| sqlx::query_as(&d.sql(ROWS))
                    .bind(&sweep)
                    .bind(epoch)
                    .fetch_all(&mut **t)
                    .await?);
                let mut by_job: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
                for (id, text) in rows {
                    let row: EpochMetrics = decode(&text, || format!("an epoch of job {id}"))?;
                    by_job.entry(id).or_default().push(metric.of(&row));
                }
                let own = by_job.remove(job).unwrap_or_default();
                let best = metric.best_by(own.iter().flatten().map(|&v| (v, ()))).map(|(v, ())| v);
                let others: Vec<f64> = by_job
                    .values()
                    .filter(|vs| vs.len() as i64 == epoch && vs.iter().all(Option::is_some))
                    .map(|vs| vs.iter().flatten().sum::<f64>() / vs.len() as f64)
                    .collect();
                let Some(best) = best else { return Ok(None) };
                let Some((stop, med)) = median_stops(metric, best, &others, min_trials) else { return Ok(None) };
                let reason = format!(
                    "epoch {}: best {} so far {} against the median {} of {} other trials' running means{}",
                    m.epoch,
                    metric.as_str(),
                    fmt(best),
                    fmt(med),
                    others.len(),
                    if stop { ": stopped" } else { "" }
                );
                ("median", None, !stop, reason)
            }
        }
    };
    record(tx, &sweep, job, m.epoch, rule_name, rung, value, promoted, reason, now).await.map(Some)
}

#[allow(clippy::too_many_arguments)]
async fn record(
    tx: &mut Tx,
    sweep: &str,
    job: &str,
    epoch: u32,
    rule: &str,
    rung: Option<u32>,
    value: Option<f64>,
    promoted: bool,
    reason: String,
    now: i64,
) -> Result<Decision, QueueError> {
    const INSERT: &str = "INSERT INTO trial_decisions (sweep_id, job_id, epoch, rule, rung, value, promoted, reason, \
         decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    on_db!(Tx, &mut *tx, |t, d| sqlx::query(&d.sql(INSERT))
        .bind(sweep)
        .bind(job)
        .bind(i64::from(epoch))
        .bind(rule)
        .bind(rung.map(i64::from))
        .bind(value)
        .bind(promoted)
        .bind(&reason)
        .bind(now)
        .execute(&mut **t)
        .await?
        .rows_affected());
    Ok(Decision { job_id: job.into(), epoch, rule: rule.into(), rung, value, promoted, reason, decided_at: now })
}

/// The decision that stopped `job`, if its sweep's rule stopped it and it is still a trial
/// (not resumed by hand since): a job claimed again after a crash between the decision and
/// its end leaves at once.
pub async fn stop_decision(pool: &Pool, job: &str) -> Result<Option<Decision>, QueueError> {
    let sql = format!(
        "SELECT {} FROM trial_decisions td JOIN sweep_jobs sj ON sj.job_id = td.job_id AND sj.sweep_id = td.sweep_id \
         WHERE td.job_id = ? AND td.promoted = FALSE AND sj.trial = TRUE AND sj.resumed = FALSE ORDER BY td.epoch LIMIT 1",
        COLUMNS.split(", ").map(|c| format!("td.{c}")).collect::<Vec<_>>().join(", ")
    );
    let got: Option<DecisionRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(job).fetch_optional(p).await?);
    Ok(got.map(decision))
}

/// Whether a search's rule judges `job` (a trial, not resumed by hand): the worker asks once
/// when the job joins a group, and judges only those epochs.
pub async fn is_judged(pool: &Pool, job: &str) -> Result<bool, QueueError> {
    const SQL: &str = "SELECT COUNT(*) FROM sweep_jobs WHERE job_id = ? AND trial = TRUE AND resumed = FALSE";
    let n: i64 = on_db!(Pool, pool, |p, d| sqlx::query_scalar(&d.sql(SQL)).bind(job).fetch_one(p).await?);
    Ok(n > 0)
}

/// Every decision of a sweep, in the order they were made.
pub async fn sweep_decisions(pool: &Pool, sweep: &str) -> Result<Vec<Decision>, QueueError> {
    let sql = format!("SELECT {COLUMNS} FROM trial_decisions WHERE sweep_id = ? ORDER BY decided_at, epoch, job_id");
    let got: Vec<DecisionRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(sweep).fetch_all(p).await?);
    Ok(got.into_iter().map(decision).collect())
}

/// What `resume_stopped` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Resumed {
    Queued,
    /// The job is not `stopped_early` (any more).
    NotStopped,
    /// Its owner has this many jobs queued already, at the limit.
    OverLimit(i64),
}

/// Puts a job that stopped early back in the queue with `spec` (its epochs raised) and
/// `epochs_total`; it resumes from its checkpoint and its search's rule judges it no more.
/// Checked against the owner's limit of queued jobs, as a new job is.
pub async fn resume_stopped(
    pool: &Pool,
    job: &str,
    owner: i64,
    spec: &str,
    epochs_total: i64,
    max_queued: i64,
    now: i64,
) -> Result<Resumed, QueueError> {
    const SQL: &str =
        "UPDATE jobs SET status = 'queued', spec = ?, epochs_total = ?, finished_at = NULL, error = NULL, \
         worker = NULL, lease_expires_at = NULL WHERE id = ? AND status = 'stopped_early'";
    const UNTRIAL: &str = "UPDATE sweep_jobs SET resumed = TRUE WHERE job_id = ?";
    let mut tx = pool.begin_write().await?;
    let queued = super::lock_queued_count(&mut tx, owner).await?;
    if queued >= max_queued {
        tx.rollback().await?;
        return Ok(Resumed::OverLimit(queued));
    }
    let n = on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
        .bind(spec)
        .bind(epochs_total)
        .bind(job)
        .execute(&mut **t)
        .await?
        .rows_affected());
    if n == 1 {
        on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(UNTRIAL)).bind(job).execute(&mut **t).await?.rows_affected());
        super::events::log(&mut tx, job, "status", "queued", now).await?;
    }
    tx.commit().await?;
    Ok(if n == 1 { Resumed::Queued } else { Resumed::NotStopped })
}
