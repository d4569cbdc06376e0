//! The queue's rules, driven directly with a clock the test moves.

use crate::db::TestDb;
use trainyard::queue::{self, users, Created, NewJob, Pool};

async fn pool() -> ((tempfile::TempDir, TestDb), Pool) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let pool = queue::connect(&db.url).await.unwrap();
    users::add_user(&pool, "ann", false, 0).await.unwrap();
    ((dir, db), pool)
}

/// Queues job `id` for user 1 (ann).
async fn add(pool: &Pool, id: &str, now: i64) {
    add_for(pool, id, 1, now).await
}

async fn add_for(pool: &Pool, id: &str, owner_id: i64, now: i64) {
    let job = NewJob {
        id,
        owner_id,
        name: None,
        spec: "{}",
        parameters: 1,
        epochs_total: 3,
        idempotency_key: None,
        request_hash: "h",
        now,
    };
    assert!(matches!(queue::create_job(pool, job, 1000).await.unwrap(), Created::New(_)));
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
    assert!(queue::record_epoch(&pool, "a", first.attempt, 1, "{\"epoch\":1}", 100, LEASE).await.unwrap());
    // The heartbeat keeps it: not expired at t = 1000 after a renewal at t = 500.
    assert!(queue::heartbeat(&pool, "a", first.attempt, 500, LEASE).await.unwrap());
    assert_eq!(queue::requeue_expired(&pool, 1_200, 3).await.unwrap(), (0, 0));
    // Silence past the lease: back to the queue.
    assert_eq!(queue::requeue_expired(&pool, 1_600, 3).await.unwrap(), (1, 0));
    let second = queue::claim_next_job(&pool, "w2", "cpu", 1_700, LEASE, 0).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    // The first worker, late, changes nothing.
    assert!(!queue::heartbeat(&pool, "a", first.attempt, 1_800, LEASE).await.unwrap());
    assert!(!queue::record_epoch(&pool, "a", first.attempt, 2, "{\"epoch\":2,\"old\":true}", 1_800, LEASE)
        .await
        .unwrap());
    assert!(!queue::finish_job(&pool, "a", first.attempt, "succeeded", None, 1_800).await.unwrap());
    // The second one writes, upserting epoch 1 rather than adding a row.
    assert!(queue::record_epoch(&pool, "a", second.attempt, 1, "{\"epoch\":1,\"again\":true}", 1_900, LEASE)
        .await
        .unwrap());
    assert!(queue::record_epoch(&pool, "a", second.attempt, 2, "{\"epoch\":2}", 1_950, LEASE).await.unwrap());
    assert_eq!(queue::get_metrics(&pool, "a", 0).await.unwrap(), ["{\"epoch\":1,\"again\":true}", "{\"epoch\":2}"]);
    assert!(queue::finish_job(&pool, "a", second.attempt, "succeeded", None, 2_000).await.unwrap());
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
    assert_eq!(job.status, "failed");
    let error = job.error.unwrap();
    assert!(error.contains("stopped responding 2 times"), "{error}");
    assert!(queue::claim_next_job(&pool, "w", "cpu", now, LEASE, 0).await.unwrap().is_none());
}

#[tokio::test]
async fn a_released_job_goes_back_without_charging_an_attempt_and_a_cancel_fences_the_worker() {
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    let c = queue::claim_next_job(&pool, "w", "cpu", 0, LEASE, 0).await.unwrap().unwrap();
    assert!(queue::release_job(&pool, "a", c.attempt).await.unwrap());
    let job = queue::get_job(&pool, "a").await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempt, job.worker), ("queued", 0, None));
    let c = queue::claim_next_job(&pool, "w", "cpu", 10, LEASE, 0).await.unwrap().unwrap();
    assert_eq!(c.attempt, 1);
    assert!(matches!(
        queue::cancel_job(&pool, "a", 20).await.unwrap(),
        queue::CancelOutcome::Cancelled { was_running: true }
    ));
    assert!(!queue::heartbeat(&pool, "a", c.attempt, 30, LEASE).await.unwrap(), "the worker learns it must stop");
    assert!(!queue::finish_job(&pool, "a", c.attempt, "succeeded", None, 40).await.unwrap());
    assert_eq!(queue::get_job(&pool, "a").await.unwrap().unwrap().status, "cancelled");
    assert!(
        matches!(queue::cancel_job(&pool, "a", 50).await.unwrap(), queue::CancelOutcome::AlreadyFinished(s) if s == "cancelled")
    );
}

#[tokio::test]
async fn the_next_job_is_the_oldest_of_the_user_with_fewest_running_then_served_longest_ago() {
    let (_d, pool) = pool().await;
    users::add_user(&pool, "ben", false, 0).await.unwrap(); // user 2
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
    users::add_user(&pool, "ben", false, 0).await.unwrap();
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
    use trainyard::queue::checkpoints::{get_checkpoint, save_checkpoint};
    let (_d, pool) = pool().await;
    add(&pool, "a", 0).await;
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), None);
    let first = queue::claim_next_job(&pool, "w1", "cpu", 0, LEASE, 0).await.unwrap().unwrap();
    let big: Vec<u8> = (0..3_200_000u32).map(|i| (i % 251) as u8).collect(); // the largest model's size
    assert!(save_checkpoint(&pool, "a", first.attempt, 1, &big, 10).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((1, big.clone())));
    // The lease expires and another worker claims the job: the first one's writes are refused.
    assert_eq!(queue::requeue_expired(&pool, 5_000, 3).await.unwrap(), (1, 0));
    let second = queue::claim_next_job(&pool, "w2", "cpu", 5_000, LEASE, 0).await.unwrap().unwrap();
    assert!(!save_checkpoint(&pool, "a", first.attempt, 2, b"stale", 5_001).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((1, big)), "the stale write changed nothing");
    assert!(save_checkpoint(&pool, "a", second.attempt, 2, b"newer", 5_002).await.unwrap());
    assert_eq!(get_checkpoint(&pool, "a").await.unwrap(), Some((2, b"newer".to_vec())));
    // Nor can anyone write after a cancel.
    queue::cancel_job(&pool, "a", 5_003).await.unwrap();
    assert!(!save_checkpoint(&pool, "a", second.attempt, 3, b"late", 5_004).await.unwrap());
}

#[tokio::test]
async fn postgres_connections_can_require_tls() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    if !db.is_postgres() {
        eprintln!("PostgreSQL only");
        return;
    }
    // A lab's queue crosses the network: `sslmode=require` must work (the test server has
    // Debian's self-signed certificate, which `require` accepts and `verify-full` would not).
    let pool = queue::connect(&format!("{}?sslmode=require", db.url)).await.unwrap();
    users::add_user(&pool, "ann", false, 0).await.unwrap();
    assert_eq!(users::count_users(&pool).await.unwrap(), 1);
    assert!(db.uses_tls(), "the connection was encrypted");
}
