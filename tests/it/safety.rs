//! A box that survives hostile requests: what a careless or malicious student can send, and
//! the admin tools that must do what they say. Each test holds one defect fixed.

use crate::helpers::*;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

async fn healthz_ms(app: &TestApp) -> u128 {
    let started = Instant::now();
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    started.elapsed().as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_of_64_axes_is_refused_and_the_server_keeps_serving() {
    let app = spawn_idle(|_| {}).await;
    // 971 bytes: 2^64 combinations, which wrapped to 0 and were then built in memory.
    let vary: Map<String, Value> = (0..64).map(|i| (format!("a{i:02}"), json!([1, 2]))).collect();
    let (status, body) = status_of(app.client.post(app.url("/sweeps")).json(&json!({"vary": vary}))).await;
    assert_eq!(status, 422, "{body}");
    let fields = body["error"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 64, "{body}");
    assert!(fields[0]["message"].as_str().unwrap().contains("unknown field; allowed fields: name, model"), "{body}");
    // Known fields with too many values: the count is named, nothing is queued.
    let many: Vec<u64> = (1..=40).collect();
    let (status, body) = status_of(
        app.client
            .post(app.url("/sweeps"))
            .json(&json!({"vary": {"epochs": many, "batch_size": many, "lr": [0.1, 0.2]}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("3200 combinations"), "{body}");
    assert_eq!(app.get("/jobs").await.1["jobs"].as_array().unwrap().len(), 0);
    assert!(healthz_ms(&app).await < 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_names_are_refused_naming_the_field() {
    let app = spawn_idle(|_| {}).await;
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"name": "a\u{0}b"}))).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "name", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("U+0000"), "{body}");
    let (status, _) = status_of(app.client.post(app.url("/jobs")).json(&json!({"name": "tab\there"}))).await;
    assert_eq!(status, 422);
    let (status, body) =
        status_of(app.client.post(app.url("/sweeps")).json(&json!({"name": "s\u{7}", "vary": {"lr": [0.1]}}))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("name")), "{body}");
    let (status, body) = status_of(app.admin.get(app.url("/jobs?owner=a%00"))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("owner")), "{body}");
    let (status, body) =
        status_of(app.admin.post(app.url("/jobs/cancel")).json(&json!({"status": "queued", "owner": "a\u{0}"}))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("owner")), "{body}");
    for path in ["/users/a%00/revoke", "/users/a%00/token"] {
        let (status, body) = status_of(app.admin.post(app.url(path))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
    }
    // Names that are only text are kept as typed.
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"name": "café <b>1</b> ✓"}))).await;
    assert_eq!((status, body["name"].as_str()), (201, Some("café <b>1</b> ✓")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_twice_is_a_400_naming_it_and_queues_nothing() {
    let app = spawn_idle(|_| {}).await;
    for (body, key) in [
        (r#"{"epochs": 2000, "epochs": 1}"#, "epochs"),
        (r#"{"model": "mlp", "hidden": [8], "model": "cnn"}"#, "model"),
    ] {
        let (status, answer) = status_of(app.client.post(app.url("/jobs")).body(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "duplicate_key", "{answer}");
        assert_eq!(answer["error"]["field"], key, "{answer}");
    }
    let (status, answer) =
        status_of(app.client.post(app.url("/sweeps")).body(r#"{"vary": {"lr": [0.1], "lr": [0.2]}}"#)).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (400, Some("lr")), "{answer}");
    assert_eq!(app.get("/jobs").await.1["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_for_sweeps_and_ignores_the_order_of_keys() {
    let app = spawn_idle(|_| {}).await;
    let post = |body: &'static str, key: &'static str| {
        app.client.post(app.url("/sweeps")).header("Idempotency-Key", key).body(body).send()
    };
    let first =
        post(r#"{"name": "lr study", "base": {"epochs": 2}, "vary": {"lr": [0.1, 0.01]}}"#, "k1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // The same request, its keys in another order: the same sweep, nothing new queued.
    let again =
        post(r#"{"vary": {"lr": [0.1, 0.01]}, "base": {"epochs": 2}, "name": "lr study"}"#, "k1").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["location"].to_str().unwrap(), format!("/sweeps/{}", first["id"].as_str().unwrap()));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let (_, list) = app.get("/sweeps").await;
    assert_eq!(list["sweeps"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(app.get("/jobs").await.1["jobs"].as_array().unwrap().len(), 2);
    // Another body under the same key is refused; another user's key is their own.
    let other = post(r#"{"base": {"epochs": 3}, "vary": {"lr": [0.1, 0.01]}}"#, "k1").await.unwrap();
    assert_eq!(other.status(), 422);
    let bobs = app.bob.post(app.url("/sweeps")).header("Idempotency-Key", "k1").json(&json!({"vary": {"lr": [0.1]}}));
    assert_eq!(bobs.send().await.unwrap().status(), 201);
    // Jobs: the same fields in another order under one key are the same job.
    let job = |body: &'static str| app.client.post(app.url("/jobs")).header("Idempotency-Key", "j1").body(body).send();
    let a: Value = job(r#"{"model": "linear", "epochs": 2}"#).await.unwrap().json().await.unwrap();
    let b = job(r#"{"epochs": 2, "model": "linear"}"#).await.unwrap();
    assert_eq!(b.status(), 200);
    assert_eq!(b.json::<Value>().await.unwrap()["id"], a["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_report_may_not_run_or_fetch_anything_and_figures_are_capped() {
    let app = spawn_idle(|_| {}).await;
    let (status, sweep) = status_of(
        app.client.post(app.url("/sweeps")).json(&json!({"name": "<script>x</script>", "vary": {"lr": [0.1]}})),
    )
    .await;
    assert_eq!(status, 201);
    let id = sweep["id"].as_str().unwrap();
    for format in ["html", "md", "zip"] {
        let r = app.client.get(app.url(&format!("/sweeps/{id}/report?format={format}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{format}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let job = app.submit(json!({"model": "linear"})).await;
    for q in ["width=4000", "height=3000", "width=2001"] {
        let (status, body) = app.get(&format!("/jobs/{job}/plot?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("2000 pixels"), "{body}");
    }
    let r = app.client.get(app.url(&format!("/jobs/{job}/plot?width=2000&height=2000"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_the_router_makes_itself_are_json_too() {
    let app = spawn_idle(|_| {}).await;
    // A path segment that is not UTF-8 fails axum's own extractor.
    let r = app.client.get(app.url("/jobs/%FF%FE")).send().await.unwrap();
    let status = r.status().as_u16();
    assert!(status == 400 || status == 404, "{status}");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
}

/// Opens a connection and sends part of a request's headers, never the end of them.
fn half_open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    s
}

/// Whether the server closes `s` within `secs` (a read that ends, or is reset).
fn closed_within(s: &mut TcpStream, secs: f64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs_f64(secs))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off_and_the_box_keeps_answering() {
    let app = spawn_idle(|c| {
        c.header_timeout_seconds = 2.0;
        c.max_connections = 40;
    })
    .await;
    let addr = app.server.addr;
    // 30 slow clients: the box still answers at once.
    let mut slow: Vec<TcpStream> = (0..30).map(|_| half_open(addr)).collect();
    assert!(healthz_ms(&app).await < 1000);
    // Past the cap, a new connection is closed as soon as it is accepted.
    // Past the cap, a new connection is closed as soon as it is accepted (well before the
    // header timeout): 5 of these 15 (6 if the /healthz connection still counts).
    let mut more: Vec<TcpStream> = (0..15).map(|_| half_open(addr)).collect();
    let refused = tokio::task::spawn_blocking(move || {
        // N.B.: all checked within 0.5 s of connecting, well before the 2 s header timeout.
        std::thread::sleep(Duration::from_millis(200));
        let n = more.iter_mut().map(|s| closed_within(s, 0.02)).filter(|c| *c).count();
        (n, more)
    });
    let (refused, _more) = refused.await.unwrap();
    assert!((5..=6).contains(&refused), "{refused} of the 15 connections past the cap of 40 were closed at once");
    // The slow ones are cut off at the header timeout (1 s), and the box answers again.
    let cut =
        tokio::task::spawn_blocking(move || slow.iter_mut().map(|s| closed_within(s, 3.0)).filter(|c| *c).count());
    assert_eq!(cut.await.unwrap(), 30, "every slow client was cut off");
    assert!(healthz_ms(&app).await < 100);
    // An idle keep-alive connection is closed too, after a request it finished.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let closed = tokio::task::spawn_blocking(move || closed_within(&mut idle, 4.0));
    assert!(closed.await.unwrap(), "an idle connection is closed after the header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_replaced_token_ends_its_open_event_streams() {
    let app = spawn_idle(|_| {}).await;
    let job = app.submit(json!({"model": "linear"})).await;
    let bob = app.bob.clone();
    let mut all = SseReader::new(SseReader::open(&bob, &app.url("/events"), None).await);
    let mut alice = SseReader::new(SseReader::open(&app.client, &app.url(&format!("/jobs/{job}/events")), None).await);
    assert_eq!(alice.next(5).await.unwrap().event, "status", "the job's history first");
    let (status, _) = status_of(app.admin.post(app.url("/users/bob/revoke"))).await;
    assert_eq!(status, 200);
    let last = all.next(5).await.expect("a final event");
    assert_eq!(last.event, "unauthorized", "{last:?}");
    assert!(last.data["error"]["message"].as_str().unwrap().contains("revoked or replaced"), "{last:?}");
    assert!(all.next(5).await.is_none(), "then the stream ends");
    // A token replaced by a new one: the same.
    let (status, _) = status_of(app.admin.post(app.url("/users/alice/token"))).await;
    assert_eq!(status, 200);
    let last = alice.next(5).await.expect("a final event");
    assert_eq!(last.event, "unauthorized", "{last:?}");
    assert!(alice.next(5).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_the_plain_text_format_pass_promtool_and_prometheus_gets_openmetrics() {
    let app = spawn_idle(|_| {}).await;
    // A job ended (cancelled), so the counter of finished jobs has a sample.
    let job = app.submit(json!({"model": "linear"})).await;
    assert_eq!(app.cancel(&job).await.0, 200);
    let r = app.admin.get(app.url("/metrics")).header("accept", "text/plain").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(!text.contains("# EOF") && text.contains("# TYPE trainyard_jobs_finished_total counter"), "{text}");
    assert!(!text.lines().any(|l| l.ends_with(" -0") || l.ends_with(" -0.0")), "no negative zero: {text}");
    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(promtool.exists(), "make test installs Debian's prometheus package, which ships promtool");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // No Accept header (curl): the text format too. Prometheus' own Accept: OpenMetrics.
    let plain = app.admin.get(app.url("/metrics")).send().await.unwrap();
    assert!(plain.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.1,*/*;q=0.05";
    let om = app.admin.get(app.url("/metrics")).header("accept", prometheus).send().await.unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n") && om.contains("# HELP trainyard_jobs_finished "), "{om}");
    crate::events::parse_metrics(&om);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_admins_token_rewrites_the_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_idle(|_| {}).await;
    let file = app.dir.path().join("admin.token");
    let old = std::fs::read_to_string(&file).unwrap().trim().to_string();
    // A second admin re-issues the first admin's token over HTTP.
    let (status, dave) =
        status_of(app.admin.post(app.url("/users")).json(&json!({"name": "dave", "admin": true}))).await;
    assert_eq!(status, 201, "{dave}");
    let dave = client_for(dave["token"].as_str().unwrap());
    let (status, answer) = status_of(dave.post(app.url("/users/admin/token"))).await;
    assert_eq!(status, 200, "{answer}");
    let new = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_ne!(new, old);
    assert_eq!(new, answer["token"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(status_of(client_for(&new).get(app.url("/me"))).await.0, 200, "the file's token works");
    assert_eq!(status_of(client_for(&old).get(app.url("/me"))).await.0, 401);
    // Another user's new token leaves the file alone.
    let (status, _) = status_of(dave.post(app.url("/users/bob/token"))).await;
    assert_eq!(status, 200);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), new);
    // The CLI, as the README tells an admin to run it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainyard"))
        .args(["users", "rotate", "admin"])
        .env("TRAINYARD_DATABASE", &app.db.url)
        .env("TRAINYARD_ADMIN_TOKEN_FILE", &file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), printed);
    assert_eq!(status_of(client_for(&printed).get(app.url("/me"))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_downloads_as_a_clear_409() {
    use trainyard::queue;
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "linear", "epochs": 1, "batch_size": 50})).await;
    app.wait_for(&id, 60, status_is("succeeded")).await;
    let pool = &app.server.pool;
    let (_, mut bytes) = queue::checkpoints::get_checkpoint(pool, &id).await.unwrap().unwrap();
    let at = bytes.len() - 64;
    bytes[at] ^= 0x01;
    // Bytes damaged on the box's disk, under the database.
    put_checkpoint(pool, &id, &bytes).await;
    let (status, body) = app.get(&format!("/jobs/{id}/model")).await;
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("is damaged") && message.contains("cannot be downloaded"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_is_noticed_at_once_and_not_replaced_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let var = dir.path().join("var");
    let url = format!("sqlite://{}", var.join("trainyard.db").display());
    let database = url.clone();
    let app = spawn_with(dir, move |c| {
        c.cpu_workers = Some(0);
        c.database = database;
    })
    .await;
    let kept = app.submit(json!({"model": "linear"})).await;
    std::fs::remove_dir_all(&var).unwrap();
    let ready = poll(&app.client, &app.url("/readyz"), 10, |r| r["reasons"].to_string().contains("deleted")).await;
    assert!(ready["reasons"].to_string().contains("was deleted under the running server"), "{ready}");
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"model": "linear"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nothing was changed"), "{body}");
    let (status, _) = app.get(&format!("/jobs/{kept}")).await;
    assert_eq!(status, 503, "reads of the vanished file are refused too");
    assert_eq!(reqwest::get(app.url("/healthz")).await.unwrap().status(), 200, "the process is alive");
    // The next start does not silently make a new, empty database...
    let TestApp { server, dir, .. } = app;
    server.shutdown();
    server.wait().await.unwrap();
    let cfg = config(dir.path(), &url, 0);
    let err = trainyard::server::start(cfg.clone()).await.err().expect("a missing database is an error");
    let message = format!("{err:#}");
    assert!(message.contains("is missing") && message.contains("--init"), "{message}");
    assert!(!var.join("trainyard.db").exists());
    // ...unless told to.
    let fresh = trainyard::server::start(trainyard::config::ServeConfig { init: true, ..cfg }).await.unwrap();
    assert_eq!(trainyard::queue::users::count_users(&fresh.pool).await.unwrap(), 1, "a new database, a new admin");
    fresh.shutdown();
    fresh.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only (this outage is PostgreSQL's; the disk-full test is SQLite's): make test runs it there"]
async fn a_postgresql_lock_out_longer_than_the_retries_is_not_charged_to_a_running_job() {
    let app = spawn_app(1).await;
    assert!(app.db.is_postgres(), "PostgreSQL only: set TRAINYARD_TEST_POSTGRES");
    let id = app.submit(json!({"model": "linear", "epochs": 1000, "batch_size": 10})).await;
    let running = app.wait_for(&id, 60, |j| j["epochs_done"].as_u64() >= Some(2)).await;
    assert_eq!(running["attempt"], 1);
    // 8 s without the database: past the workers' ~6 s of retries and the 1 s lease (the
    // outage's length is the scenario, not a wait for something to happen).
    app.db.lock_out(true);
    tokio::time::sleep(Duration::from_secs(8)).await;
    app.db.lock_out(false);
    let before = running["epochs_done"].as_u64().unwrap();
    let on = app.wait_for(&id, 60, |j| j["status"] == "running" && j["epochs_done"].as_u64() > Some(before + 2)).await;
    assert_eq!(on["attempt"], 1, "the box's outage is not the job's: {on}");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(app.cancel(&id).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_students_worst_requests_healthz_answers_fast_and_no_acknowledged_job_is_lost() {
    let app = spawn_idle(|c| c.header_timeout_seconds = 2.0).await;
    let app = &app;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Liveness, probed every 20 ms throughout.
    let probe = {
        let (url, stop) = (app.url("/healthz"), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut took = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || took.len() < 10 {
                let started = Instant::now();
                assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
                took.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            took.sort();
            took
        })
    };
    let addr = app.server.addr;
    let slow = tokio::task::spawn_blocking(move || (0..200).map(|_| half_open(addr)).collect::<Vec<_>>());
    let vary: Map<String, Value> = (0..64).map(|i| (format!("a{i:02}"), json!([1, 2]))).collect();
    let job = app.submit(json!({"model": "linear"})).await;
    let mut acknowledged = vec![job.clone()];
    for round in 0..10 {
        let hostile = [
            app.client.post(app.url("/sweeps")).json(&json!({"vary": vary})),
            app.client.post(app.url("/jobs")).json(&json!({"name": "a\u{0}b"})),
            app.client.post(app.url("/jobs")).body(r#"{"epochs": 2000, "epochs": 1}"#),
            app.client.get(app.url(&format!("/jobs/{job}/plot?width=4000&height=3000"))),
            app.client.get(app.url(&format!("/jobs/{job}/plot?width=2000&height=2000"))),
            app.client.get(app.url("/jobs?owner=a%00")),
        ];
        let answers = futures::future::join_all(hostile.into_iter().map(|r| r.send())).await;
        for a in answers {
            let status = a.unwrap().status().as_u16();
            assert!(status < 500, "round {round}: {status}");
        }
        acknowledged.push(app.submit(json!({"model": "linear", "name": format!("kept {round}")})).await);
    }
    let _slow = slow.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // N.B.: the issue's bar is 100 ms; a test shares two cores with other tests' training, so
    // the median is held to it and the worst to 1 s (what broke took seconds, or forever).
    let took = probe.await.unwrap();
    let (median, worst) = (took[took.len() / 2], took[took.len() - 1]);
    assert!(
        median < Duration::from_millis(100) && worst < Duration::from_secs(1),
        "/healthz: {median:?} median, {worst:?} worst"
    );
    for id in &acknowledged {
        assert_eq!(app.job(id).await["status"], "queued");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_checkpoint_is_damaged_trains_again_from_epoch_1_and_says_so() {
    use trainyard::train::{self, CheckpointStore, DirStore, TrainOptions};
    let app = spawn_idle(|_| {}).await;
    let body = json!({"model": "linear", "epochs": 2, "batch_size": 50, "seed": 5, "name": "twin"});
    // The checkpoint this very spec leaves after its last epoch, trained here...
    let spec = trainyard::spec::Spec::parse(&body).unwrap();
    let data = trainyard::train::data::Data::load(
        &trainyard::dataset::CIFAR10,
        &app.dir.path().join("data"),
        tch::Device::Cpu,
    )
    .unwrap();
    let ckpt = tempfile::tempdir().unwrap();
    let store = DirStore::new(ckpt.path());
    let opts = TrainOptions { checkpoints: Some(&store as &dyn CheckpointStore), threads: Some(1) };
    let mut sink = trainyard::train::metrics::VecSink::default();
    train::train(&spec, &data, &opts, &mut sink, &std::sync::atomic::AtomicBool::new(false)).unwrap();
    let mut bytes = store.read().unwrap().unwrap();
    let at = bytes.len() - 32;
    bytes[at] ^= 0x10;
    // ...damaged, and stored as the queued job's: a worker that claims it would resume there.
    let id = app.submit(body).await;
    put_checkpoint(&app.server.pool, &id, &bytes).await;
    // A worker on the same database takes it.
    let workers = trainyard::server::start(config(app.dir.path(), &app.db.url, 1)).await.unwrap();
    let _stop = workers.shutdown_on_drop();
    let done = app.wait_for(&id, 60, status_is("succeeded")).await;
    assert_eq!((done["epochs_done"].as_u64(), done["attempt"].as_u64()), (Some(2), Some(1)), "{done}");
    let notice = done["notice"].as_str().unwrap_or_else(|| panic!("no notice: {done}"));
    assert!(notice.contains("is damaged") && notice.contains("from epoch 1"), "{notice}");
    // Its epochs are the undamaged run's.
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    let got: Vec<f64> = m["epochs"].as_array().unwrap().iter().map(|e| e["test_acc"].as_f64().unwrap()).collect();
    let want: Vec<f64> = sink.0.iter().map(|e| e.test_acc).collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 0.006), "{got:?} vs the undamaged run's {want:?}");
}

/// Stores `bytes` as `job`'s checkpoint (of its epoch 2) behind the queue's back, as a
/// damaged disk would leave them.
async fn put_checkpoint(pool: &trainyard::queue::Pool, job: &str, bytes: &[u8]) {
    const SQL: &str = "INSERT INTO checkpoints (job_id, epoch, data, updated_at) VALUES ($1, 2, $2, 0) \
         ON CONFLICT (job_id) DO UPDATE SET data = excluded.data";
    let done = match pool {
        trainyard::queue::Pool::Sqlite(p) => sqlx::query(SQL).bind(job).bind(bytes).execute(p).await.map(|_| ()),
        trainyard::queue::Pool::Postgres(p) => sqlx::query(SQL).bind(job).bind(bytes).execute(p).await.map(|_| ()),
    };
    done.unwrap();
}
