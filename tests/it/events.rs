//! Live progress over real HTTP: the job's progress inside an epoch, its event stream, the
//! caller's stream of all their jobs, and the limits on streams.

use crate::helpers::{spawn_app, spawn_idle, spawn_with, Sse, SseReader};
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
        assert!(sent.as_object_mut().unwrap().remove("at").unwrap().as_str().unwrap().ends_with('Z'));
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
    let app = spawn_idle(|c| c.max_streams_per_user = 2).await;
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
    // Closing one frees its place (once the server sees the connection go).
    drop(hers);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let _again = loop {
        let r = SseReader::open(&app.client, &app.url("/events"), None).await;
        if r.status() == 200 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream's place was never freed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // A shutdown ends the streams: the server stops instead of waiting for them.
    let t = std::time::Instant::now();
    let crate::helpers::TestApp { server, .. } = app;
    server.shutdown();
    tokio::time::timeout(std::time::Duration::from_secs(10), server.wait()).await.expect("stopped").unwrap();
    assert!(t.elapsed().as_secs() < 10);
}

/// The samples of a Prometheus/OpenMetrics text exposition, by `name{labels}`; panics on a
/// line that is neither a comment nor a well-formed sample.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    assert!(text.ends_with("# EOF\n"), "ends as OpenMetrics does");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or_default();
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(name.starts_with("trainyard_"), "{line}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
            for pair in series[name_end + 1..series.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
            }
        }
        let v: f64 = if value == "+Inf" { f64::INFINITY } else { value.parse().unwrap_or_else(|_| panic!("{line}")) };
        out.insert(series.to_string(), v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_parse_move_as_jobs_run_and_are_for_admins_only() {
    let app = spawn_app(1).await;
    // Scrapes until `series` shows (the workers report on their heartbeat).
    let app = &app;
    let scrape_until = |series: &'static str| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = app
                .admin
                .get(app.url("/metrics"))
                .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
            let m = parse_metrics(&r.text().await.unwrap());
            if m.contains_key(series) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "{series} never showed: {m:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let before = scrape_until("trainyard_workers{device=\"cpu\",state=\"idle\"}").await;
    assert_eq!(before["trainyard_build_info{version=\"0.1.0\"}"], 1.0);
    assert_eq!(before.get("trainyard_jobs_finished_total{status=\"succeeded\"}"), None);
    assert_eq!(before["trainyard_workers{device=\"cpu\",state=\"idle\"}"], 1.0, "{before:?}");
    let done = app.submit(json!({"model": "linear", "epochs": 2})).await;
    app.wait_for(&done, 60, crate::helpers::status_is("succeeded")).await;
    let queued = app.submit(json!({"model": "cnn", "epochs": 500})).await;
    let waiting = app.submit(json!({"model": "mlp", "epochs": 1})).await;
    app.cancel(&waiting).await;
    app.wait_for(&queued, 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    let after = scrape_until("trainyard_workers{device=\"cpu\",state=\"busy\"}").await;
    assert_eq!(after["trainyard_jobs_finished_total{status=\"succeeded\"}"], 1.0);
    assert_eq!(after["trainyard_jobs_finished_total{status=\"cancelled\"}"], 1.0);
    assert_eq!(after["trainyard_jobs{state=\"running\"}"], 1.0);
    assert_eq!(after["trainyard_jobs{state=\"succeeded\"}"], 1.0);
    assert_eq!(after["trainyard_job_duration_seconds_count"], 1.0);
    assert!(after["trainyard_queue_wait_seconds_count"] >= 2.0, "{after:?}");
    assert!(after["trainyard_epoch_duration_seconds_count"] >= 3.0, "{after:?}");
    assert_eq!(after["trainyard_workers{device=\"cpu\",state=\"busy\"}"], 1.0);
    assert_eq!(after["trainyard_oldest_queued_job_age_seconds"], 0.0, "nothing waits");
    // Histograms have cumulative buckets ending in +Inf = count.
    assert_eq!(
        after["trainyard_epoch_duration_seconds_bucket{le=\"+Inf\"}"],
        after["trainyard_epoch_duration_seconds_count"]
    );
    // A student's token is refused, and so is no token.
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 403);
    assert_eq!(reqwest::get(app.url("/metrics")).await.unwrap().status(), 401);
    app.cancel(&queued).await;
}
