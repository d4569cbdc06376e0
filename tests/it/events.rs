//! Live progress over real HTTP: the job's progress inside an epoch, its event stream, the
//! caller's stream of all their jobs, and the limits on streams.

use crate::helpers::{spawn_app, spawn_with, write_data, Sse, SseReader};
use serde_json::{json, Value};

/// The ids of the events that carry one.
fn ids(events: &[Sse]) -> Vec<String> {
    events.iter().filter_map(|e| e.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_stream_sends_its_history_then_each_epoch_in_order_then_done_and_closes() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "linear", "epochs": 3, "batch_size": 1})).await;
    let url = app.url(&format!("/jobs/{id}/events"));
    let mut stream = SseReader::new(SseReader::open(&app.client, &url, None).await);
    let events = stream.rest(60).await;
    let kinds: Vec<&str> = events.iter().filter(|e| e.event != "progress").map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["status", "status", "epoch", "epoch", "epoch", "status", "done"], "{events:?}");
    let statuses: Vec<&str> =
        events.iter().filter(|e| e.event == "status").map(|e| e.data["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "running", "succeeded"]);
    let epochs: Vec<u64> =
        events.iter().filter(|e| e.event == "epoch").map(|e| e.data["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2, 3]);
    // Each epoch event is the row /metrics shows.
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    for (e, row) in events.iter().filter(|e| e.event == "epoch").zip(m["epochs"].as_array().unwrap()) {
        let mut sent = e.data.clone();
        sent.as_object_mut().unwrap().remove("job");
        assert_eq!(&sent, row);
    }
    let done = events.last().unwrap();
    assert_eq!((done.data["id"].as_str(), done.data["status"].as_str()), (Some(id.as_str()), Some("succeeded")));
    // Progress events have no id; every other event has one, increasing.
    assert!(events.iter().all(|e| (e.event == "progress") == e.id.is_none()), "{events:?}");
    let seqs: Vec<i64> = ids(&events).iter().map(|s| s.parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");

    // A finished job's stream replays its history and closes at once.
    let mut again = SseReader::new(SseReader::open(&app.client, &url, None).await);
    let replay = again.rest(10).await;
    assert_eq!(ids(&replay), ids(&events).into_iter().collect::<Vec<_>>(), "the same events, the same ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "linear", "epochs": 4, "batch_size": 2})).await;
    let url = app.url(&format!("/jobs/{id}/events"));
    let mut first = SseReader::new(SseReader::open(&app.client, &url, None).await);
    // Read up to the first epoch, then drop the connection.
    let mut seen = Vec::new();
    loop {
        let e = first.next(60).await.unwrap();
        let epoch = e.event == "epoch";
        seen.push(e);
        if epoch {
            break;
        }
    }
    drop(first);
    let last = ids(&seen).last().unwrap().clone();
    let mut second = SseReader::new(SseReader::open(&app.client, &url, Some(&last)).await);
    let rest = second.rest(60).await;
    let mut all = ids(&seen);
    all.extend(ids(&rest));
    let full = ids(&SseReader::new(SseReader::open(&app.client, &url, None).await).rest(10).await);
    assert_eq!(all, full, "nothing missed, nothing twice");
    let epochs: Vec<u64> =
        seen.iter().chain(&rest).filter(|e| e.event == "epoch").map(|e| e.data["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2, 3, 4]);
    // A Last-Event-ID that is not one of ours is a clear 400.
    let r = SseReader::open(&app.client, &url, Some("yesterday")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "Last-Event-ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_shows_its_progress_inside_the_epoch() {
    // 5,000 training images, so an epoch at batch 1 lasts seconds.
    let dir = tempfile::tempdir().unwrap();
    trainyard::train::data::write_synthetic(&dir.path().join("data"), 1000, 200, 9).unwrap();
    let app = spawn_with(dir, |c| c.cpu_workers = Some(1)).await;
    let id = app.submit(json!({"model": "cnn", "epochs": 100, "batch_size": 1})).await;
    let job = app
        .wait_for(&id, 60, |j| j["progress"]["batches_done"].as_u64().unwrap_or(0) > 0 && j["epochs_done"] == 0)
        .await;
    let p = &job["progress"];
    assert_eq!(p["epoch"], 1);
    assert_eq!(p["batches_total"], 5000, "5,000 training images at batch 1: {p}");
    assert!(p["samples_per_second"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["eta"].as_str().unwrap() >= p["epoch_eta"].as_str().unwrap(), "{p}");
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(m["progress"]["epoch"], 1, "{m}");
    let (_, cancelled) = app.cancel(&id).await;
    assert!(cancelled.get("progress").is_none(), "a finished job has no progress: {cancelled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_private_and_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let app = spawn_with(dir, |c| {
        c.cpu_workers = Some(0);
        c.max_streams_per_user = 2;
    })
    .await;
    let id = app.submit(json!({"model": "linear", "epochs": 1})).await;
    // Another student's job is 404, as everywhere.
    let r = app.bob.get(app.url(&format!("/jobs/{id}/events"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Bob's stream of all his jobs does not see Alice's; hers does.
    let mut bobs = SseReader::new(SseReader::open(&app.bob, &app.url("/events"), None).await);
    let mut hers = SseReader::new(SseReader::open(&app.client, &app.url("/events"), None).await);
    let mine = app.submit(json!({"model": "linear", "epochs": 1, "name": "second"})).await;
    let e = hers.next(10).await.unwrap();
    assert_eq!(
        (e.event.as_str(), e.data["job"].as_str(), e.data["status"].as_str()),
        ("status", Some(mine.as_str()), Some("queued"))
    );
    let bob_job =
        app.bob.post(app.url("/jobs")).json(&json!({"epochs": 1})).send().await.unwrap().json::<Value>().await.unwrap();
    let e = bobs.next(10).await.unwrap();
    assert_eq!(e.data["job"], bob_job["id"], "bob sees his own job first, never alice's: {e:?}");
    // Alice has one stream open; a second is allowed, a third is 429.
    let _two = SseReader::new(SseReader::open(&app.client, &app.url(&format!("/jobs/{id}/events")), None).await);
    let three = SseReader::open(&app.client, &app.url("/events"), None).await;
    assert_eq!(three.status(), 429);
    assert!(three.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("event streams open"));
    // Closing one frees its place.
    drop(hers);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = SseReader::open(&app.client, &app.url("/events"), None).await;
    assert_eq!(again.status(), 200);
    // A shutdown ends the streams: the server stops instead of waiting for them.
    let t = std::time::Instant::now();
    let crate::helpers::TestApp { server, .. } = app;
    server.shutdown();
    tokio::time::timeout(std::time::Duration::from_secs(10), server.wait()).await.expect("stopped").unwrap();
    assert!(t.elapsed().as_secs() < 10);
}
