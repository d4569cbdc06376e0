//! Pure: where each queued job stands and when it should start, from a snapshot of the
//! queue. It replays the claim rule of `queue::claim_group`'s first pick (priority, then the
//! owner with the fewest running jobs, then the owner served longest ago, then the oldest
//! job); a running fused group holds one worker until its last member ends. Queued jobs that
//! will ride along in a group are planned as if each took a worker of its own, so their
//! estimates err late.

use crate::job::JobStatus;
use crate::queue::QueueEntry;
use std::collections::HashMap;

/// A job's place in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// 1 is next; `None` for running jobs.
    pub position: Option<usize>,
    /// When it should start (ms since the epoch); `None` when no estimate can be made
    /// (nothing like it has run yet). Running jobs: when they started.
    pub estimated_start: Option<i64>,
}

/// Seconds per epoch for a (model, batch size), from past jobs.
pub type History = HashMap<(String, i64), f64>;

fn setup(e: &QueueEntry) -> (String, i64) {
    e.spec.0.as_ref().map_or((String::new(), 0), |s| (s.model.as_str().to_string(), s.batch_size.into()))
}

/// Plans the queue for `workers` workers at time `now`.
pub fn plan(entries: &[QueueEntry], history: &History, workers: usize, now: i64) -> HashMap<String, Planned> {
    let mut out = HashMap::new();
    let mut running: HashMap<i64, i64> = HashMap::new();
    let mut served: HashMap<i64, i64> = HashMap::new();
    // When each worker comes free; None: busy for a time we cannot tell. A fused group holds
    // one worker until its last member ends.
    let mut busy: HashMap<&str, Option<i64>> = HashMap::new();
    for e in entries {
        served.insert(e.owner_id, e.last_served_at.unwrap_or(0));
        if e.status == JobStatus::Running {
            *running.entry(e.owner_id).or_default() += 1;
            let per_epoch = e.epoch_seconds.or_else(|| history.get(&setup(e)).copied());
            let end = per_epoch.map(|s| now + ((e.epochs_total - e.epochs_done).max(0) as f64 * s * 1000.0) as i64);
            let slot = busy.entry(e.group_id.as_deref().unwrap_or(&e.id)).or_insert(end);
            *slot = slot.zip(end).map(|(a, b)| a.max(b));
            out.insert(e.id.clone(), Planned { position: None, estimated_start: e.started_at });
        }
    }
    let mut free: Vec<Option<i64>> = busy.into_values().collect();
    // Only `workers` of the running jobs hold this box's workers; the soonest free first.
    free.sort_by_key(|t| t.unwrap_or(i64::MAX));
    free.truncate(workers.max(1));
    free.resize(workers.max(1), Some(now));

    let mut waiting: Vec<&QueueEntry> = entries.iter().filter(|e| e.status == JobStatus::Queued).collect();
    let mut position = 0;
    let mut clock = now;
    while !waiting.is_empty() {
        let (at, _) = waiting
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| {
                (
                    -e.priority,
                    running.get(&e.owner_id).copied().unwrap_or(0),
                    served.get(&e.owner_id).copied().unwrap_or(0),
                    e.seq,
                )
            })
            .expect("not empty");
        let e = waiting.remove(at);
        position += 1;
        *running.entry(e.owner_id).or_default() += 1;
        clock += 1;
        served.insert(e.owner_id, clock);
        // The worker that comes free first takes it.
        let slot = (0..free.len()).min_by_key(|&i| free[i].unwrap_or(i64::MAX)).expect("at least one worker");
        let start = free[slot];
        let duration = history.get(&setup(e)).map(|s| (e.epochs_total as f64 * s * 1000.0) as i64);
        free[slot] = start.zip(duration).map(|(s, d)| s + d);
        out.insert(e.id.clone(), Planned { position: Some(position), estimated_start: start });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, owner: i64, status: &str) -> QueueEntry {
        let status: JobStatus = status.parse().unwrap();
        QueueEntry {
            seq,
            id: format!("j{seq}"),
            owner_id: owner,
            owner: format!("u{owner}"),
            priority: 0,
            status,
            spec: crate::queue::StoredSpec(Some(crate::spec::Spec::default())),
            epochs_total: 10,
            epochs_done: if status == JobStatus::Running { 4 } else { 0 },
            created_at: 0,
            started_at: (status == JobStatus::Running).then_some(5),
            last_served_at: None,
            epoch_seconds: (status == JobStatus::Running).then_some(2.0),
            group_id: None,
        }
    }

    #[test]
    fn a_classmates_single_job_goes_before_a_long_sweep() {
        // User 1 runs one job and queued ten more; user 2 queued one after them.
        let mut e = vec![entry(1, 1, "running")];
        e.extend((2..=11).map(|s| entry(s, 1, "queued")));
        e.push(entry(12, 2, "queued"));
        let history = History::from([(("cnn".to_string(), 4), 2.0)]);
        let p = plan(&e, &history, 1, 1_000_000);
        assert_eq!(p["j12"].position, Some(1));
        assert_eq!(p["j2"].position, Some(2));
        assert_eq!(p["j1"].position, None);
        // The running job has 6 epochs of 2 s left; then user 2's job starts, 20 s later j2.
        assert_eq!(p["j12"].estimated_start, Some(1_000_000 + 12_000));
        assert_eq!(p["j2"].estimated_start, Some(1_000_000 + 12_000 + 20_000));
    }

    #[test]
    fn a_running_group_holds_one_worker_until_its_last_member_ends() {
        // Worker 1 trains a group of two (4 and 6 epochs of 2 s left), worker 2 a job alone
        // (6 epochs left): the queued job starts when the solo job ends, at 12 s, not when
        // the group's first member does.
        let mut e = vec![entry(1, 1, "running"), entry(2, 1, "running"), entry(3, 2, "running")];
        e[0].group_id = Some("g".into());
        e[1].group_id = Some("g".into());
        e[0].epochs_done = 6;
        e.push(entry(4, 3, "queued"));
        let p = plan(&e, &History::new(), 2, 0);
        assert_eq!(p["j4"].estimated_start, Some(12_000));
    }

    #[test]
    fn priority_goes_first_and_unknown_setups_give_no_estimate() {
        let mut e = vec![entry(1, 1, "queued"), entry(2, 2, "queued")];
        e[1].priority = 5;
        let p = plan(&e, &History::new(), 2, 0);
        assert_eq!(p["j2"].position, Some(1));
        assert_eq!(p["j1"].position, Some(2));
        assert_eq!(p["j2"].estimated_start, Some(0), "a free worker takes it now");
        assert_eq!(p["j1"].estimated_start, Some(0), "the second worker too");
        let p = plan(&[entry(1, 1, "queued"), entry(2, 1, "queued")], &History::new(), 1, 0);
        assert_eq!(p["j2"].estimated_start, None, "nothing like j1 has run: its end is unknown");
    }
}
