//! The queue's rules, driven directly with a clock the test moves.

use crate::db::TestDb;
use trainyard::job::{JobStatus, Progress};
use trainyard::queue::{self, users, Created, NewJob, Pool};

async fn pool() -> ((tempfile::TempDir, TestDb), Pool) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let pool = queue::connect(&db.url).await.unwrap();
    users::add_user(&pool, "ann", trainyard::queue::users::Role::Student, 0).await.unwrap();
    ((dir, db), pool)
}

/// Queues job `id` for user 1 (ann).
async fn add(pool: &Pool, id: &str, now: i64) {
    add_for(pool, id, 1, now).await
}

async fn add_for(pool: &Pool, id: &str, owner_id: i64, now: i64) {
    add_keyed(pool, id, owner_id, "cnn@4", now).await
}

/// Queues job `id` for `owner_id` with the group key `key`.
async fn add_keyed(pool: &Pool, id: &str, owner_id: i64, key: &str, now: i64) {
    let job = new_job(id, owner_id, key, now);
    assert!(matches!(queue::create_job(pool, job, 1000).await.unwrap(), Created::New(_)));
}

/// A job of 3 epochs for `owner_id` with the group key `key`.
fn new_job<'a>(id: &'a str, owner_id: i64, key: &'a str, now: i64) -> NewJob<'a> {
    NewJob {
        id,
        owner_id,
        name: None,
        spec: "{}",
        parameters: 1,
        epochs_total: 3,
        group_key: key,
        idempotency_key: None,
        request_hash: "h",
        now,
    }
}

const LEASE: i64 = 1_000;

#[tokio::test]
async fn jobs_are_claimed_oldest_first_and_each_only_once() {
    let (_d, pool) = pool().await;
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        add(&pool, id, i as i64).await;
    }
    let mut got = Vec::new();
    while let Some(c) = queue::claim_next_job(&pool, "w", "cpu", 10, LEASE, 0).await.unwrap() {
        assert_eq!(c.attempt, 1);
        got.push(c.id);
    }
    assert_eq!(got, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_hand_one_job_to_two_workers() {
    let (_d, pool) = pool().await;
    for i in 0..60 {
        add(&pool, &format!("j{i:02}"), i).await;
    }
    // Eight workers race for the queue, each on its own connection, until it is empty.
    let racers = (0..8).map(|w| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = queue::claim_next_job(&pool, &format!("w{w}"), "cpu", 10, LEASE, 0).await.unwrap() {
                assert_eq!(c.attempt, 1, "{} claimed twice", c.id);
                mine.push(c.id);
            }
            mine
        })
    });
    let mut all: Vec<String> = futures::future::join_all(racers).await.into_iter().flat_map(Result::unwrap).collect();
    all.sort();
    let expected: Vec<String> = (0..60).map(|i| format!("j{i:02}")).collect();
    assert_eq!(all, expected, "every job claimed, none twice");
}

#[tokio::test]
async fn an_expired_lease_requeues_the_job_and_fences_out_the_old_worker() {
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    let first = queue::claim_next_job(&pool, "w1", "cpu", 0, LEASE, 0).await.unwrap().unwrap();
    assert!(queue::Lease::new("a", first.attempt).record_epoch(&pool, 1, &epoch(1, 0.1), 100, LEASE).await.unwrap());
    // The heartbeat keeps it: not expired at t = 1000 after a renewal at t = 500.
    assert!(queue::Lease::new("a", first.attempt).heartbeat(&pool, 500, LEASE).await.unwrap());
    assert_eq!(queue::requeue_expired(&pool, 1_200, 3).await.unwrap(), (0, 0));
    // Silence past the lease: back to the queue.
    assert_eq!(queue::requeue_expired(&pool, 1_600, 3).await.unwrap(), (1, 0));
    let second = queue::claim_next_job(&pool, "w2", "cpu", 1_700, LEASE, 0).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    // The first worker, late, changes nothing.
    assert!(!queue::Lease::new("a", first.attempt).heartbeat(&pool, 1_800, LEASE).await.unwrap());
    assert!(!queue::Lease::new("a", first.attempt).record_epoch(&pool, 2, &epoch(2, 0.2), 1_800, LEASE).await.unwrap());
    assert!(!queue::Lease::new("a", first.attempt).finish(&pool, JobStatus::Succeeded, None, 1_800).await.unwrap());
    // The second one writes, upserting epoch 1 rather than adding a row.
    assert!(queue::Lease::new("a", second.attempt).record_epoch(&pool, 1, &epoch(1, 0.3), 1_900, LEASE).await.unwrap());
    assert!(queue::Lease::new("a", second.attempt).record_epoch(&pool, 2, &epoch(2, 0.4), 1_950, LEASE).await.unwrap());
    assert_eq!(queue::get_metrics(&pool, "a", 0).await.unwrap(), [epoch(1, 0.3), epoch(2, 0.4)]);
    assert!(queue::Lease::new("a", second.attempt).finish(&pool, JobStatus::Succeeded, None, 2_000).await.unwrap());
    let job = queue::get_job(&pool, "a").await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempt, job.epochs_done), ("succeeded", 2, 2));
}

#[tokio::test]
async fn a_job_whose_workers_keep_dying_fails_with_the_reason_after_max_attempts() {
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    let mut now = 0;
    for attempt in 1..=2 {
        let c = queue::claim_next_job(&pool, "w", "cpu", now, LEASE, 0).await.unwrap().unwrap();
        assert_eq!(c.attempt, attempt);
        now += 2 * LEASE;
        assert_eq!(queue::requeue_expired(&pool, now, 2).await.unwrap(), if attempt < 2 { (1, 0) } else { (0, 1) });
    }
    let job = queue::get_job(&pool, "a").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("stopped responding 2 times"), "{error}");
    assert!(queue::claim_next_job(&pool, "w", "cpu", now, LEASE, 0).await.unwrap().is_none());
}

#[tokio::test]
async fn a_released_job_goes_back_without_charging_an_attempt_and_a_cancel_fences_the_worker() {
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    let c = queue::claim_next_job(&pool, "w", "cpu", 0, LEASE, 0).await.unwrap().unwrap();
    assert!(queue::Lease::new("a", c.attempt).release(&pool, 0).await.unwrap());
    let job = queue::get_job(&pool, "a").await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempt, job.worker), ("queued", 0, None));
    let c = queue::claim_next_job(&pool, "w", "cpu", 10, LEASE, 0).await.unwrap().unwrap();
    assert_eq!(c.attempt, 1);
    assert!(matches!(
        queue::cancel_job(&pool, "a", 20).await.unwrap(),
        queue::CancelOutcome::Cancelled { was_running: true }
    ));
    assert!(
        !queue::Lease::new("a", c.attempt).heartbeat(&pool, 30, LEASE).await.unwrap(),
        "the worker learns it must stop"
    );
    assert!(!queue::Lease::new("a", c.attempt).finish(&pool, JobStatus::Succeeded, None, 40).await.unwrap());
    assert_eq!(queue::get_job(&pool, "a").await.unwrap().unwrap().status, JobStatus::Cancelled);
    assert!(
        matches!(queue::cancel_job(&pool, "a", 50).await.unwrap(), queue::CancelOutcome::AlreadyFinished(s) if s == JobStatus::Cancelled)
    );
}

#[tokio::test]
async fn the_next_job_is_the_oldest_of_the_user_with_fewest_running_then_served_longest_ago() {
    let (_d, pool) = pool().await;
    users::add_user(&pool, "ben", trainyard::queue::users::Role::Student, 0).await.unwrap(); // user 2
    for i in 0..10 {
        add_for(&pool, &format!("a{i}"), 1, i).await;
    }
    add_for(&pool, "b0", 2, 100).await;
    let claim = |now| {
        let pool = pool.clone();
        async move { queue::claim_next_job(&pool, "w", "cpu", now, LEASE, 0).await.unwrap().unwrap().id }
    };
    assert_eq!(claim(200).await, "a0", "no one runs anything: the oldest job");
    assert_eq!(claim(201).await, "b0", "ann runs one, ben none: ben's job, though submitted last");
    assert_eq!(claim(202).await, "a1");
    assert_eq!(claim(203).await, "a2", "ann runs two, ben one, but ben has nothing queued");
}

#[tokio::test]
async fn priority_goes_first_and_a_running_limit_passes_a_user_over() {
    let (_d, pool) = pool().await;
    users::add_user(&pool, "ben", trainyard::queue::users::Role::Student, 0).await.unwrap();
    add_for(&pool, "a0", 1, 0).await;
    add_for(&pool, "a1", 1, 1).await;
    add_for(&pool, "b0", 2, 2).await;
    assert!(queue::set_priority(&pool, "b0", 5).await.unwrap());
    let first = queue::claim_next_job(&pool, "w", "cpu", 10, LEASE, 1).await.unwrap().unwrap();
    assert_eq!(first.id, "b0");
    let second = queue::claim_next_job(&pool, "w", "cpu", 11, LEASE, 1).await.unwrap().unwrap();
    assert_eq!(second.id, "a0");
    // ann already runs 1 of her limit of 1; ben has nothing left: nobody is claimable.
    assert!(queue::claim_next_job(&pool, "w", "cpu", 12, LEASE, 1).await.unwrap().is_none());
    assert_eq!(queue::claim_next_job(&pool, "w", "cpu", 13, LEASE, 0).await.unwrap().unwrap().id, "a1");
}

#[tokio::test]
async fn checkpoints_are_kept_in_the_database_and_written_only_by_the_lease_holder() {
    use trainyard::queue::checkpoints::get_checkpoint;
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), None);
    let first = queue::claim_next_job(&pool, "w1", "cpu", 0, LEASE, 0).await.unwrap().unwrap();
    let big: Vec<u8> = (0..3_200_000u32).map(|i| (i % 251) as u8).collect(); // the largest model's size
    assert!(queue::Lease::new("a", first.attempt).save_checkpoint(&pool, 1, &big, 10).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((1, big.clone())));
    // The lease expires and another worker claims the job: the first one's writes are refused.
    assert_eq!(queue::requeue_expired(&pool, 5_000, 3).await.unwrap(), (1, 0));
    let second = queue::claim_next_job(&pool, "w2", "cpu", 5_000, LEASE, 0).await.unwrap().unwrap();
    assert!(!queue::Lease::new("a", first.attempt).save_checkpoint(&pool, 2, b"stale", 5_001).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((1, big)), "the stale write changed nothing");
    assert!(queue::Lease::new("a", second.attempt).save_checkpoint(&pool, 2, b"newer", 5_002).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((2, b"newer".to_vec())));
    // Nor can anyone write after a cancel.
    queue::cancel_job(&pool, "a", 5_003).await.unwrap();
    assert!(!queue::Lease::new("a", second.attempt).save_checkpoint(&pool, 3, b"late", 5_004).await.unwrap());
    // Retention: the checkpoint of a job finished before the cutoff goes, and says its size.
    use trainyard::queue::checkpoints::drop_checkpoints_before;
    assert_eq!(drop_checkpoints_before(&pool, 5_003).await.unwrap(), (0, 0), "finished at 5_003, not before");
    assert_eq!(drop_checkpoints_before(&pool, 6_000).await.unwrap(), (1, 5));
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), None);
}

#[tokio::test]
#[ignore = "PostgreSQL only: make test runs it there (TRAINYARD_TEST_POSTGRES)"]
async fn postgres_connections_can_require_tls() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    assert!(db.is_postgres(), "PostgreSQL only: set TRAINYARD_TEST_POSTGRES");
    // A lab's queue crosses the network: `sslmode=require` must work (the test server has
    // Debian's self-signed certificate, which `require` accepts and `verify-full` would not).
    let pool = queue::connect(&format!("{}?sslmode=require", db.url)).await.unwrap();
    users::add_user(&pool, "ann", trainyard::queue::users::Role::Student, 0).await.unwrap();
    assert_eq!(users::count_users(&pool).await.unwrap(), 1);
    assert!(db.uses_tls(), "the connection was encrypted");
}

fn terms(worker: &str, now: i64, max_running: i64) -> queue::ClaimTerms<'_> {
    queue::ClaimTerms {
        worker,
        device: "cpu",
        now,
        lease_ms: LEASE,
        max_running,
        datasets: None,
        share: 1,
        balance: None,
    }
}

fn ids(c: &[queue::Claimed]) -> Vec<&str> {
    c.iter().map(|c| c.id.as_str()).collect()
}

#[tokio::test]
async fn a_group_is_the_next_job_then_jobs_of_its_key_in_the_fair_order_up_to_the_cap() {
    let (_d, pool) = pool().await;
    users::add_user(&pool, "ben", trainyard::queue::users::Role::Student, 0).await.unwrap(); // user 2
    add_keyed(&pool, "a-cnn0", 1, "cnn@4", 0).await;
    add_keyed(&pool, "a-mlp", 1, "mlp@4", 1).await;
    add_keyed(&pool, "a-cnn1", 1, "cnn@4", 2).await;
    add_keyed(&pool, "a-cnn2", 1, "cnn@4", 3).await;
    add_keyed(&pool, "b-cnn0", 2, "cnn@4", 4).await;
    add_keyed(&pool, "a-cnn3", 1, "cnn@4", 5).await;
    let g = queue::claim_group(&pool, &terms("w", 10, 0), |_| 4, "g1").await.unwrap();
    // After ann's first job, ben runs fewer jobs than ann: his job comes second.
    assert_eq!(ids(&g), ["a-cnn0", "b-cnn0", "a-cnn1", "a-cnn2"]);
    for c in &g {
        let row = queue::get_job(&pool, &c.id).await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.group_id.as_deref(), row.group_size), ("running", Some("g1"), 4));
    }
    // One transaction renews the whole group's leases, carries progress where there is
    // news (and keeps the last where there is none), and tells which leases are lost.
    let news = Progress {
        epoch: 1,
        batches_done: 2,
        batches_total: 10,
        samples_per_second: 8.0,
        epoch_eta_ms: 20,
        job_eta_ms: 30,
        at_ms: 10,
    };
    let progress = |i: usize| (i == 0).then(|| news.clone());
    let leases: Vec<(queue::Lease, Option<Progress>)> =
        g.iter().enumerate().map(|(i, c)| (c.lease(), progress(i))).collect();
    assert_eq!(queue::renew_leases(&pool, &leases, 10, LEASE).await.unwrap(), [true; 4]);
    let quiet: Vec<_> = leases.iter().map(|(l, _)| (l.clone(), None)).collect();
    assert_eq!(queue::renew_leases(&pool, &quiet, 10, LEASE).await.unwrap(), [true; 4]);
    let first = queue::get_job(&pool, "a-cnn0").await.unwrap().unwrap();
    assert_eq!(first.progress, Some(news));
    assert_eq!(queue::get_job(&pool, "b-cnn0").await.unwrap().unwrap().progress, None);
    queue::cancel_job(&pool, "a-cnn2", 10).await.unwrap();
    assert_eq!(queue::renew_leases(&pool, &quiet, 10, LEASE).await.unwrap(), [true, true, true, false]);
    // The next group starts with the next job in the fair order, another shape, alone.
    let g2 = queue::claim_group(&pool, &terms("w", 11, 0), |_| 4, "g2").await.unwrap();
    assert_eq!(ids(&g2), ["a-mlp"]);
    // A running group takes newcomers only while the queue's next job has its shape: ben's
    // MLP job (ben runs fewer jobs than ann) is next, so nothing joins.
    add_keyed(&pool, "b-mlp", 2, "mlp@4", 6).await;
    assert!(queue::claim_joiners(&pool, &terms("w", 12, 0), "cnn@4", "g1", 4).await.unwrap().is_empty());
    let g3 = queue::claim_group(&pool, &terms("w", 13, 0), |_| 4, "g3").await.unwrap();
    assert_eq!(ids(&g3), ["b-mlp"]);
    // Now ann's last CNN job is next: it joins the running group at its epoch boundary.
    let joined = queue::claim_joiners(&pool, &terms("w", 14, 0), "cnn@4", "g1", 4).await.unwrap();
    assert_eq!(ids(&joined), ["a-cnn3"]);
    assert_eq!(queue::get_job(&pool, "a-cnn0").await.unwrap().unwrap().group_size, 5);
    assert_eq!(queue::get_job(&pool, "a-cnn3").await.unwrap().unwrap().group_id.as_deref(), Some("g1"));
    assert!(queue::claim_group(&pool, &terms("w", 15, 0), |_| 4, "g4").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_group_holds_no_more_of_one_users_jobs_than_the_running_limit() {
    let (_d, pool) = pool().await;
    users::add_user(&pool, "ben", trainyard::queue::users::Role::Student, 0).await.unwrap();
    // Ann submits the assignment's seven CNN batch-4 jobs, then Ben one MLP job.
    for i in 0..7 {
        add_keyed(&pool, &format!("a{i}"), 1, "cnn@4", i).await;
    }
    add_keyed(&pool, "b-mlp", 2, "mlp@4", 10).await;
    let g = queue::claim_group(&pool, &terms("w", 20, 2), |_| 8, "g1").await.unwrap();
    assert_eq!(ids(&g), ["a0", "a1"], "at most 2 of ann's jobs run at once, grouped or not");
    // Ben's job is next on this worker, ahead of ann's other five.
    let g = queue::claim_group(&pool, &terms("w", 21, 2), |_| 8, "g2").await.unwrap();
    assert_eq!(ids(&g), ["b-mlp"]);
    // Without the limit, ann's seven fill one group.
    let (_d2, pool2) = pool_with_two_users().await;
    for i in 0..7 {
        add_keyed(&pool2, &format!("a{i}"), 1, "cnn@4", i).await;
    }
    add_keyed(&pool2, "b-mlp", 2, "mlp@4", 10).await;
    let g = queue::claim_group(&pool2, &terms("w", 20, 0), |_| 8, "g1").await.unwrap();
    assert_eq!(g.len(), 7);
}

#[tokio::test]
async fn a_new_group_takes_its_share_of_its_keys_queued_jobs_and_leaves_the_rest_to_the_other_workers() {
    let (_d, pool) = pool().await;
    // The assignment's seven CNN batch-4 jobs, then an MLP job.
    for i in 0..7 {
        add_keyed(&pool, &format!("a{i}"), 1, "cnn@4", i).await;
    }
    add_keyed(&pool, "a-mlp", 1, "mlp@4", 10).await;
    let shared = |worker, now| queue::ClaimTerms { share: 2, ..terms(worker, now, 0) };
    // Two workers: the first takes ⌈7 ÷ 2⌉, the second the next job, and a worker free again
    // half of what is left of the key, then the last one.
    let g = queue::claim_group(&pool, &shared("w1", 20), |_| 8, "g1").await.unwrap();
    assert_eq!(ids(&g), ["a0", "a1", "a2", "a3"]);
    let g = queue::claim_group(&pool, &shared("w2", 21), |_| 8, "g2").await.unwrap();
    assert_eq!(ids(&g), ["a4", "a5"]);
    let g = queue::claim_group(&pool, &shared("w2", 22), |_| 8, "g3").await.unwrap();
    assert_eq!(ids(&g), ["a6"]);
    let g = queue::claim_group(&pool, &shared("w1", 23), |_| 8, "g4").await.unwrap();
    assert_eq!(ids(&g), ["a-mlp"]);
    // The device's cap still holds below the share, and a worker alone takes all it may.
    let (_d2, pool2) = self::pool().await;
    for i in 0..20 {
        add_keyed(&pool2, &format!("b{i:02}"), 1, "cnn@4", i).await;
    }
    assert_eq!(queue::claim_group(&pool2, &shared("w1", 30), |_| 8, "g1").await.unwrap().len(), 8);
    assert_eq!(queue::claim_group(&pool2, &shared("w2", 31), |_| 8, "g2").await.unwrap().len(), 6);
    assert_eq!(queue::claim_group(&pool2, &terms("w3", 32, 0), |_| 8, "g3").await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_balance_sizes_a_new_group_from_the_queued_work_by_key_the_head_left_out() {
    let ((_dir, db), pool) = pool().await;
    for i in 0..5 {
        add_keyed(&pool, &format!("c{i}"), 1, "cnn@4", i).await;
    }
    add_keyed(&pool, "m0", 1, "mlp@4", 10).await;
    add_keyed(&pool, "m1", 1, "mlp@4", 11).await;
    // A job whose stored key is unknown counts as a key of its own.
    let mut old = new_job("x", 1, "", 12);
    old.epochs_total = 5;
    assert!(matches!(queue::create_job(&pool, old, 1000).await.unwrap(), Created::New(_)));
    db.execute("UPDATE jobs SET group_key = NULL WHERE id = 'x'").await;
    // The MLP jobs' specs as the queue stores them; the others' (`{}`, no seed) do not parse.
    db.execute(r#"UPDATE jobs SET spec = '{"model": "mlp", "seed": 1}' WHERE group_key = 'mlp@4'"#).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let balance = |head: &queue::Claimed, cap: usize, queued: &[queue::QueuedKey]| {
        let mut keys: Vec<(String, i64, i64, bool)> =
            queued.iter().map(|k| (k.key.clone(), k.jobs, k.epochs, k.spec.0.is_some())).collect();
        keys.sort();
        seen.lock().unwrap().push((head.id.clone(), cap, keys));
        3
    };
    let balanced = queue::ClaimTerms { share: 2, balance: Some(&balance), ..terms("w1", 20, 0) };
    let g = queue::claim_group(&pool, &balanced, |_| 8, "g1").await.unwrap();
    assert_eq!(ids(&g), ["c0", "c1", "c2"], "the balance's answer sizes the group");
    let seen = seen.into_inner().unwrap();
    let want =
        vec![("cnn@4".to_string(), 4, 12, false), ("mlp@4".to_string(), 2, 6, true), ("x".to_string(), 1, 5, false)];
    assert_eq!(seen, [("c0".to_string(), 8, want)]);
    // A worker alone, or a cap of one, asks nothing.
    let never = |_: &queue::Claimed, _: usize, _: &[queue::QueuedKey]| -> usize { panic!("asked") };
    let alone = queue::ClaimTerms { share: 1, balance: Some(&never), ..terms("w2", 21, 0) };
    assert_eq!(ids(&queue::claim_group(&pool, &alone, |_| 8, "g2").await.unwrap()), ["c3", "c4"]);
    let capped = queue::ClaimTerms { share: 2, balance: Some(&never), ..terms("w3", 22, 0) };
    assert_eq!(ids(&queue::claim_group(&pool, &capped, |_| 1, "g3").await.unwrap()), ["m0"]);
}

async fn pool_with_two_users() -> ((tempfile::TempDir, TestDb), Pool) {
    let (d, pool) = pool().await;
    users::add_user(&pool, "ben", trainyard::queue::users::Role::Student, 0).await.unwrap();
    (d, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_group_claims_never_put_one_job_in_two_groups() {
    let (_d, pool) = pool().await;
    for i in 0..60 {
        add_keyed(&pool, &format!("j{i:02}"), 1, if i % 3 == 0 { "mlp@4" } else { "cnn@4" }, i).await;
    }
    let racers = (0..6).map(|w| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let name = format!("w{w}");
                let group = format!("g{w}-{}", mine.len());
                let g = queue::claim_group(&pool, &terms(&name, 10, 0), |_| 4, &group).await.unwrap();
                if g.is_empty() {
                    break;
                }
                assert!(g.len() <= 4);
                for c in g {
                    assert_eq!(c.attempt, 1, "{} claimed twice", c.id);
                    mine.push((c.id, c.group_key, group.clone()));
                }
            }
            mine
        })
    });
    let all: Vec<(String, Option<String>, String)> =
        futures::future::join_all(racers).await.into_iter().flat_map(Result::unwrap).collect();
    let mut seen: Vec<&str> = all.iter().map(|(id, _, _)| id.as_str()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60, "every job claimed exactly once");
    // Each group holds one key only.
    let mut keys: std::collections::HashMap<&str, &str> = Default::default();
    for (_, key, group) in &all {
        let k = keys.entry(group.as_str()).or_insert(key.as_deref().unwrap());
        assert_eq!(*k, key.as_deref().unwrap(), "group {group} mixes shapes");
    }
}

#[tokio::test]
async fn gc_of_whole_jobs_takes_a_sweep_only_with_all_of_its_jobs() {
    use trainyard::queue::sweeps::{create_sweep, NewSweep, NewSweepJob, SweepCreated};
    let (_db, pool) = pool().await;
    let member =
        |id| NewSweepJob { job: new_job(id, 1, "k", 10), point: "{}".into(), sections: "[]".into(), trial: false };
    add(&pool, "alone", 5).await;
    let sweep = NewSweep {
        id: "s",
        owner_id: 1,
        name: None,
        definition: "{}",
        preset: None,
        idempotency_key: None,
        request_hash: "h",
        now: 10,
    };
    assert_eq!(create_sweep(&pool, &sweep, vec![member("a"), member("b")], 100).await.unwrap(), SweepCreated::New);
    // The lone job and "a" finish early (oldest first); "b" is still queued.
    for id in ["alone", "a"] {
        let c = queue::claim_next_job(&pool, "w", "cpu", 20, LEASE, 0).await.unwrap().unwrap();
        assert_eq!(c.id, id);
        assert!(c.lease().finish(&pool, JobStatus::Succeeded, None, 30).await.unwrap());
    }
    let (early, late) = ("a", "b");
    let d = queue::checkpoints::drop_jobs_before(&pool, 1_000).await.unwrap();
    assert_eq!((d.jobs, d.sweeps), (1, 0), "the lone job only: the sweep still has {late} unfinished");
    assert!(queue::get_job(&pool, "alone").await.unwrap().is_none());
    assert!(queue::get_job(&pool, early).await.unwrap().is_some(), "kept with its sweep");
    // Once every job of the sweep is old, the sweep goes with them.
    let c = queue::claim_next_job(&pool, "w", "cpu", 40, LEASE, 0).await.unwrap().unwrap();
    assert_eq!(c.id, late);
    assert!(c.lease().finish(&pool, JobStatus::Succeeded, None, 50).await.unwrap());
    let d = queue::checkpoints::drop_jobs_before(&pool, 1_000).await.unwrap();
    assert_eq!((d.jobs, d.sweeps), (2, 1));
    assert!(queue::sweeps::get_sweep(&pool, "s").await.unwrap().is_none());
    assert!(queue::sweeps::sweep_jobs(&pool, "s").await.unwrap().is_empty());
}

/// An epoch's row whose test accuracy tells it apart.
fn epoch(epoch: u32, test_acc: f64) -> trainyard::job::EpochMetrics {
    trainyard::job::EpochMetrics {
        epoch,
        train_loss: Some(1.0),
        train_acc: 0.5,
        test_loss: None,
        test_acc,
        seconds: 1.0,
        train_seconds: 0.5,
        samples_per_second: 100.0,
        diverged: false,
        lr: None,
    }
}
