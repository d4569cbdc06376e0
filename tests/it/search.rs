//! Searches: sampled spaces, ASHA's rungs across fused groups, `stopped_early`, resuming a
//! stopped trial, and decisions that survive a restart.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use trainyard::job::EpochMetrics;
use trainyard::queue;
use trainyard::search::{asha_promotes, Metric};

async fn post_sweep(app: &TestApp, body: Value) -> (u16, Value) {
    status_of(app.client.post(app.url("/sweeps")).json(&body)).await
}

/// Polls the sweep until none of its jobs is queued or running.
async fn wait_sweep(app: &TestApp, id: &str, secs: u64) -> Value {
    poll(&app.client, &app.url(&format!("/sweeps/{id}")), secs, |s| {
        s["jobs"]
            .as_array()
            .is_some_and(|js| js.iter().all(|j| !matches!(j["status"].as_str(), Some("queued" | "running"))))
    })
    .await
}

fn search_body(trials: u64, seed: Option<u64>) -> Value {
    let mut b = json!({
        "name": "lr search",
        "base": {"epochs": 3, "train_limit": 40, "batch_size": 4},
        "search": {"lr": {"log_uniform": [0.000001, 10.0]}, "momentum": {"uniform": [0.5, 0.99]}},
        "trials": trials,
        "early_stop": {"asha": {"metric": "test_acc", "grace_epochs": 1, "reduction": 3}}
    });
    if let Some(s) = seed {
        b["seed"] = json!(s);
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_samples_the_same_trials_from_the_same_seed_and_validates_every_one() {
    let app = spawn_idle(|_| {}).await;
    let (s1, a) = post_sweep(&app, search_body(5, Some(7))).await;
    let (s2, b) = post_sweep(&app, search_body(5, Some(7))).await;
    assert_eq!((s1, s2), (201, 201), "{a} {b}");
    let points = |s: &Value| s["jobs"].as_array().unwrap().iter().map(|j| j["point"].clone()).collect::<Vec<_>>();
    assert_eq!(points(&a), points(&b), "one seed, one set of trials");
    assert_eq!(points(&a).len(), 5);
    for p in points(&a) {
        let lr = p["lr"].as_f64().unwrap();
        assert!((0.000001..=10.0).contains(&lr), "{p}");
    }
    assert_eq!(
        a["jobs"][0]["name"],
        format!("trial 1: lr={}, momentum={}", a["jobs"][0]["point"]["lr"], a["jobs"][0]["point"]["momentum"])
    );
    assert!(a["jobs"].as_array().unwrap().iter().all(|j| j["trial"] == true && j["status"] == "queued"));
    assert_eq!(a["search"]["sampling_seed"], 7);
    assert_eq!(a["search"]["epochs_full"], 15);
    assert_eq!(a["name"], "lr search");
    // Without a seed one is drawn, and recorded: the definition repeats the search.
    let (_, c) = post_sweep(&app, search_body(5, None)).await;
    let seed = c["definition"]["seed"].as_u64().expect("the drawn seed is recorded");
    let (_, d) = post_sweep(&app, c["definition"].clone()).await;
    assert_eq!(points(&c), points(&d), "seed {seed}");

    // Every sampled spec is validated before anything is queued, and each error names
    // where it came from.
    let (_, before) = app.get("/jobs?limit=200").await;
    let bad = json!({"base": {"epochs": 2}, "search": {"batch_size": {"choice": [4, 0]}, "lr": {"normal": [0, 1]},
        "momentum": {"uniform": [0.9, 0.5]}, "colour": {"choice": [1]}}, "trials": 20, "seed": 1,
        "early_stop": {"asha": {"reduction": 1}}});
    let (status, e) = post_sweep(&app, bad).await;
    assert_eq!(status, 422, "{e}");
    let fields: BTreeSet<&str> =
        e["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        BTreeSet::from(["search.lr", "search.momentum", "search.colour", "early_stop.asha.reduction"]),
        "{e}"
    );
    let (status, e) = post_sweep(
        &app,
        json!({"base": {"epochs": 2}, "search": {"batch_size": {"choice": [4, 0]}}, "trials": 30, "seed": 1}),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "search.batch_size (value 0)", "{e}");
    let (status, e) = post_sweep(&app, json!({"search": {"lr": {"uniform": [0.1, 1]}}, "trials": 101})).await;
    assert_eq!((status, e["error"]["fields"][0]["field"].as_str()), (422, Some("trials")), "{e}");
    let (status, e) = post_sweep(
        &app,
        json!({"base": {"epochs": 3}, "search": {"lr": {"uniform": [0.1, 1]}},
        "trials": 3, "early_stop": {"asha": {"grace_epochs": 3}}}),
    )
    .await;
    assert_eq!((status, e["error"]["fields"][0]["field"].as_str()), (422, Some("early_stop.asha.grace_epochs")), "{e}");
    let (_, after) = app.get("/jobs?limit=200").await;
    assert_eq!(before["jobs"].as_array().unwrap().len(), after["jobs"].as_array().unwrap().len(), "nothing queued");
}

/// The decisions at each rung, replayed in the order they were made, are ASHA's.
fn assert_rungs_follow_asha(search: &Value, reduction: u32) {
    for rung in search["rungs"].as_array().unwrap() {
        let mut seen: Vec<f64> = Vec::new();
        for t in rung["trials"].as_array().unwrap() {
            let Some(v) = t["value"].as_f64() else { continue };
            let (on, ..) = asha_promotes(Metric::TestAcc, v, &seen, reduction);
            assert_eq!(t["promoted"].as_bool().unwrap(), on, "rung {rung}");
            seen.push(v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asha_stops_trials_at_rungs_and_a_stopped_trial_leaves_its_fused_group_for_the_next() {
    // One worker, groups of at most 3: the first three trials train fused; a trial stopped at
    // a rung leaves at the epoch's end and the next trial takes its place in the same group.
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let app = spawn_with(dir, |c| c.max_group = Some(3)).await;
    let (status, sweep) = post_sweep(&app, search_body(6, Some(3))).await;
    assert_eq!(status, 201, "{sweep}");
    let id = sweep["id"].as_str().unwrap();
    let done = wait_sweep(&app, id, 240).await;
    let search = &done["search"];
    let trials = search["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let stopped: Vec<&Value> = trials.iter().filter(|t| t["status"] == "stopped_early").collect();
    assert!(!stopped.is_empty(), "with reduction 3, some of 6 trials stop: {search}");
    assert!(trials.iter().all(|t| matches!(t["status"].as_str(), Some("stopped_early" | "succeeded"))), "{search}");
    assert_rungs_follow_asha(search, 3);
    assert_eq!(search["rungs"][0]["epoch"], 1);
    let rung0 = search["rungs"][0]["trials"].as_array().unwrap();
    let diverged = stopped.iter().filter(|t| t["stopped_because"].as_str().unwrap().contains("not finite")).count();
    assert_eq!(rung0.len() + diverged, 6, "every trial that did not diverge was judged at rung 0: {search}");
    let mut saved = 0;
    for t in &stopped {
        let job = app.job(t["id"].as_str().unwrap()).await;
        let done_epochs = job["epochs_done"].as_i64().unwrap();
        assert!(done_epochs < 3, "{job}");
        saved += 3 - done_epochs;
        // It keeps its epochs and says why it stopped.
        let (_, m) = app.get(&format!("/jobs/{}/metrics", t["id"].as_str().unwrap())).await;
        assert_eq!(m["epochs"].as_array().unwrap().len() as i64, done_epochs, "{m}");
        let why = t["stopped_because"].as_str().unwrap();
        assert!(why.contains("stopped") || why.contains("not finite"), "{why}");
        assert_eq!(job["stopped_because"].as_str(), Some(why), "the job says why too: {job}");
    }
    assert_eq!(search["epochs_saved"], saved);
    assert_eq!(search["epochs_run"].as_i64().unwrap() + saved, 18);
    let best = &search["best"];
    let top = trials.iter().filter_map(|t| t["best"].as_f64()).fold(f64::MIN, f64::max);
    assert_eq!(best["best"].as_f64().unwrap(), top);

    // Fused: the trials trained in groups of up to three, and one group took a trial after
    // another left it.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in trials {
        let job = app.job(t["id"].as_str().unwrap()).await;
        let g = job["group"]["id"].as_str().unwrap().to_string();
        groups.entry(g).or_default().push(t["label"].as_str().unwrap().to_string());
    }
    assert!(groups.values().any(|m| m.len() > 3), "a group's freed place went to the next trial: {groups:?}");

    // The status is in the job's event history, as every other end is.
    let url = app.url(&format!("/jobs/{}/events", stopped[0]["id"].as_str().unwrap()));
    let mut events = SseReader::new(SseReader::open(&app.client, &url, None).await);
    let statuses: Vec<Value> =
        events.rest(30).await.into_iter().filter(|e| e.event == "status").map(|e| e.data["status"].clone()).collect();
    assert_eq!(statuses.last(), Some(&json!("stopped_early")), "{statuses:?}");
    // GET /jobs filters by it.
    let (_, list) = app.get("/jobs?status=stopped_early").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), stopped.len());

    // A stopped trial resumes from its checkpoint with more epochs; the rule judges it no
    // more, and its first epochs are the ones it had.
    let first = stopped[0]["id"].as_str().unwrap();
    let (_, before) = app.get(&format!("/jobs/{first}/metrics")).await;
    let (status, other) = status_of(app.bob.post(app.url(&format!("/jobs/{first}/resume")))).await;
    assert_eq!(status, 404, "not bob's: {other}");
    let (status, bad) =
        status_of(app.client.post(app.url(&format!("/jobs/{first}/resume"))).json(&json!({"epochs": 0}))).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (422, Some("epochs")), "{bad}");
    let (status, bad) =
        status_of(app.client.post(app.url(&format!("/jobs/{first}/resume"))).json(&json!({"epochs": 1}))).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (400, Some("epochs")), "no more than it has done: {bad}");
    let (status, resumed) =
        status_of(app.client.post(app.url(&format!("/jobs/{first}/resume"))).json(&json!({"epochs": 4}))).await;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("queued")), "{resumed}");
    let job = app.wait_for(first, 120, |j| j["status"] == "succeeded").await;
    assert_eq!(job["epochs_done"], 4);
    let (_, after) = app.get(&format!("/jobs/{first}/metrics")).await;
    let strip = |m: &Value| -> Vec<EpochMetrics> {
        m["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::from_value::<EpochMetrics>(e.clone()).unwrap().without_timings())
            .collect()
    };
    let (b, a) = (strip(&before), strip(&after));
    assert_eq!(a.len(), 4);
    assert_eq!(a[..b.len()], b[..], "the epochs it had are kept, not trained again");
    let (status, again) = status_of(app.client.post(app.url(&format!("/jobs/{first}/resume")))).await;
    assert_eq!(status, 409, "{again}");
    let sweep = app.get(&format!("/sweeps/{id}")).await.1;
    let j = sweep["jobs"].as_array().unwrap().iter().find(|j| j["id"] == first).unwrap();
    assert_eq!((j["resumed"].as_bool(), j["status"].as_str()), (Some(true), Some("succeeded")), "{j}");
    let (status, report) = status_of(app.client.get(app.url(&format!("/sweeps/{id}/report?format=md")))).await;
    assert_eq!(status, 200, "{report}");
}

fn epoch(n: u32, test_acc: f64) -> EpochMetrics {
    EpochMetrics {
        epoch: n,
        train_loss: Some(1.0),
        train_acc: test_acc,
        test_loss: Some(1.0),
        test_acc,
        seconds: 0.1,
        train_seconds: 0.1,
        samples_per_second: 1.0,
        diverged: false,
        lr: Some(0.1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_search_keeps_every_rung_decision() {
    // A process that claimed two trials recorded their first epoch and its rung decisions,
    // then died before either ended. The next process makes no decision again: the stopped
    // trial ends stopped_early without training another batch, the promoted one trains on.
    let app = spawn_idle(|c| c.lease_seconds = 0.5).await;
    let (status, sweep) = post_sweep(
        &app,
        json!({"base": {"epochs": 3, "train_limit": 40}, "search": {"lr": {"log_uniform": [0.001, 0.01]}},
               "trials": 2, "seed": 5, "early_stop": {"asha": {"grace_epochs": 1, "reduction": 3}}}),
    )
    .await;
    assert_eq!(status, 201, "{sweep}");
    let sweep_id = sweep["id"].as_str().unwrap().to_string();
    let pool = app.server.pool.clone();
    let now = queue::now_ms();
    let a = queue::claim_next_job(&pool, "dead/cpu:0", "cpu", now, 60_000, 0).await.unwrap().unwrap();
    let b = queue::claim_next_job(&pool, "dead/cpu:0", "cpu", now, 60_000, 0).await.unwrap().unwrap();
    let mut made = Vec::new();
    for (c, acc) in [(&a, 0.5), (&b, 0.3)] {
        let lease = c.lease();
        assert!(lease.record_epoch(&pool, 1, &epoch(1, acc), now, 60_000).await.unwrap());
        made.push(lease.decide(&pool, &epoch(1, acc), now).await.unwrap().expect("epoch 1 is rung 0"));
    }
    assert_eq!((made[0].promoted, made[1].promoted), (true, false), "{made:?}");
    // Asked again (a retried write), the same decision comes back; none is made anew.
    let again = b.lease().decide(&pool, &epoch(1, 0.9), now + 5).await.unwrap().unwrap();
    assert_eq!(again, made[1]);

    // The dead process's leases lapse; a new server on the same database takes over.
    let dir = app.dir.path().to_path_buf();
    let url = app.db.url.clone();
    let mut cfg = config(&dir, &url, 1);
    cfg.lease_seconds = 0.5;
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.admin_token_file = dir.join("admin2.token");
    cfg.state_dir = Some(dir.join("state2"));
    // N.B.: the dead claims expire after 60 s; move them to now.
    let expired = queue::requeue_expired(&pool, now + 61_000, 3).await.unwrap();
    assert_eq!(expired.0, 2, "both claims lapsed");
    let second = trainyard::server::start(cfg).await.unwrap();
    let _stop = second.shutdown_on_drop();
    let stopped = app.wait_for(&b.id, 120, |j| j["status"] == "stopped_early").await;
    assert_eq!(stopped["epochs_done"], 1, "it trained no further: {stopped}");
    app.wait_for(&a.id, 120, |j| j["status"] == "succeeded").await;
    let decisions = queue::search::sweep_decisions(&pool, &sweep_id).await.unwrap();
    let at = |job: &str, e: u32| decisions.iter().filter(|d| d.job_id == job && d.epoch == e).collect::<Vec<_>>();
    assert_eq!(at(&a.id, 1), [&made[0]], "the promoted trial's rung-0 decision was not made again");
    assert_eq!(at(&b.id, 1), [&made[1]]);
    assert_eq!(decisions.len(), 2, "epochs 2 and 3 are no rung of 3 epochs at reduction 3: {decisions:?}");
    let (_, s) = app.get(&format!("/sweeps/{sweep_id}")).await;
    assert_eq!(s["search"]["epochs_saved"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_median_rule_stops_a_trial_below_the_others_running_means_once_grace_is_over() {
    let app = spawn_idle(|_| {}).await;
    let (status, sweep) = post_sweep(
        &app,
        json!({"base": {"epochs": 5, "train_limit": 40}, "search": {"lr": {"uniform": [0.001, 0.01]}}, "trials": 4,
               "seed": 2, "early_stop": {"median": {"grace_epochs": 2, "min_trials": 2}}}),
    )
    .await;
    assert_eq!(status, 201, "{sweep}");
    let pool = app.server.pool.clone();
    let now = queue::now_ms();
    let mut claimed = Vec::new();
    for _ in 0..4 {
        claimed.push(queue::claim_next_job(&pool, "w/cpu:0", "cpu", now, 60_000, 0).await.unwrap().unwrap());
    }
    // Running means at epoch 2: 0.40, 0.30, 0.15, 0.425; bests 0.5, 0.4, 0.2, 0.45.
    let accs = [[0.3, 0.5], [0.2, 0.4], [0.1, 0.2], [0.4, 0.45]];
    for (c, a) in claimed.iter().zip(accs) {
        for (i, acc) in a.into_iter().enumerate() {
            assert!(c.lease().record_epoch(&pool, i as i64 + 1, &epoch(i as u32 + 1, acc), now, 60_000).await.unwrap());
        }
    }
    let lease = claimed[2].lease();
    assert_eq!(lease.decide(&pool, &epoch(1, 0.1), now).await.unwrap(), None, "within the grace epochs");
    let verdicts: Vec<(bool, String)> = {
        let mut v = Vec::new();
        for (c, a) in claimed.iter().zip(accs) {
            let d = c.lease().decide(&pool, &epoch(2, a[1]), now).await.unwrap().expect("judged at epoch 2");
            v.push((d.promoted, d.reason));
        }
        v
    };
    // Trial 3's best (0.2) is below the median of the others' means (0.40, 0.30, 0.425 → 0.40);
    // the others' bests are not below theirs.
    let on: Vec<bool> = verdicts.iter().map(|v| v.0).collect();
    assert_eq!(on, [true, true, false, true], "{verdicts:?}");
    assert!(
        verdicts[2].1.contains("best test_acc so far 0.2000 against the median 0.4000 of 3 other trials"),
        "{verdicts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_with_lr_search_queues_trials_in_its_learning_rate_section() {
    let app = spawn_idle(|_| {}).await;
    let (status, sweep) = post_sweep(
        &app,
        json!({"preset": "cifar10-assignment", "lr_search": {"trials": 5}, "seed": 4, "overrides": {"epochs": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{sweep}");
    assert_eq!(sweep["jobs"].as_array().unwrap().len(), 8 + 5);
    assert_eq!(sweep["search"]["section"], "lr");
    assert_eq!(sweep["search"]["trials"].as_array().unwrap().len(), 5);
    assert_eq!(
        sweep["search"]["early_stop"],
        json!({"asha": {"metric": "test_acc", "grace_epochs": 1, "reduction": 3}})
    );
    let id = sweep["id"].as_str().unwrap();
    let r = app.client.get(app.url(&format!("/sweeps/{id}/report"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("6. Learning rate, searched") && html.contains("Search"), "{}", &html[..400]);
    let (status, plot) = status_of(app.client.get(app.url(&format!("/sweeps/{id}/plot?section=lr")))).await;
    assert_eq!(status, 200, "{plot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_11_keeps_every_job_its_references_and_its_counter_on_sqlite() {
    // A database as migration 10 left it, with jobs, an epoch, a checkpoint and a sweep;
    // then every migration.
    let (_dir, pool, all) = sqlite_at_migration(10).await;
    for sql in [
        "INSERT INTO users (name, token_hash, created_at) VALUES ('a', 'h', 1)",
        "INSERT INTO jobs (id, owner_id, spec, parameters, status, epochs_total, created_at) VALUES \
         ('j1', 1, '{}', 1, 'succeeded', 1, 1), ('j2', 1, '{}', 1, 'queued', 1, 1), ('j3', 1, '{}', 1, 'queued', 1, 1)",
        "DELETE FROM jobs WHERE id = 'j3'",
        "INSERT INTO epochs (job_id, epoch, metrics) VALUES ('j1', 1, '{}')",
        "INSERT INTO checkpoints (job_id, epoch, data, updated_at) VALUES ('j1', 1, x'00', 1)",
        "INSERT INTO sweeps (id, owner_id, definition, created_at) VALUES ('s', 1, '{}', 1)",
        "INSERT INTO sweep_jobs (sweep_id, job_id, position, point, sections) VALUES ('s', 'j1', 0, '{}', '[]')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    all.run(&pool).await.unwrap();
    let jobs: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT id, seq, status FROM jobs ORDER BY seq").fetch_all(&pool).await.unwrap();
    assert_eq!(jobs, [("j1".into(), 1, "succeeded".into()), ("j2".into(), 2, "queued".into())]);
    let broken: Vec<(String,)> =
        sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check").fetch_all(&pool).await.unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    // The new status is allowed, a job with children still cannot be deleted, and the next
    // job's seq is not the deleted j3's.
    sqlx::query("UPDATE jobs SET status = 'stopped_early' WHERE id = 'j1'").execute(&pool).await.unwrap();
    assert!(sqlx::query("DELETE FROM jobs WHERE id = 'j1'").execute(&pool).await.is_err(), "references enforced");
    assert!(sqlx::query("UPDATE jobs SET status = 'lost' WHERE id = 'j2'").execute(&pool).await.is_err());
    sqlx::query("INSERT INTO jobs (id, owner_id, spec, parameters, status, epochs_total, created_at) VALUES ('j4', 1, '{}', 1, 'queued', 1, 1)")
        .execute(&pool)
        .await
        .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM jobs WHERE id = 'j4'").fetch_one(&pool).await.unwrap();
    assert_eq!(seq, 4, "AUTOINCREMENT's counter kept");
    let trial: i64 = sqlx::query_scalar("SELECT trial FROM sweep_jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(trial, 0);
}
