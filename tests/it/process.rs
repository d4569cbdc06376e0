//! `trainyard serve` as a real child process: crashes and graceful stops.

use crate::db::TestDb;
use crate::helpers::{poll, status_is, write_data};
use reqwest::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `trainyard serve` child on port 0; its address read from its log.
struct ServeProcess {
    child: Child,
    base: String,
    /// Its log lines so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A test's files (data, admin token) and database, shared by the processes it starts.
struct Site {
    dir: tempfile::TempDir,
    db: TestDb,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        write_data(dir.path());
        let db = TestDb::new(dir.path());
        Site { dir, db }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The admin token the first start wrote.
fn admin(site: &Site) -> Client {
    crate::helpers::client_for(std::fs::read_to_string(site.path().join("admin.token")).unwrap().trim())
}

/// `trainyard <command>` with one CPU worker on one thread, a 1 s lease and the test's files.
fn trainyard(site: &Site, command: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainyard"));
    c.args([command, "--cpu-workers", "1", "--threads-per-worker", "1", "--lease-seconds", "1"])
        .args(["--database", &site.db.url])
        .arg("--data-dir")
        .arg(site.path().join("data"))
        .env("TRAINYARD_STATE_DIR", site.path().join("state"));
    c
}

impl ServeProcess {
    fn start(site: &Site) -> ServeProcess {
        Self::start_with(site, &[])
    }

    fn start_with(site: &Site, extra: &[&str]) -> ServeProcess {
        // N.B.: the tests poll every 25 ms, past the default per-token rate limit.
        let mut child = trainyard(site, "serve")
            .args(["--bind", "127.0.0.1:0", "--rate-limit", "0"])
            .args(extra)
            .arg("--admin-token-file")
            .arg(site.path().join("admin.token"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServeProcess { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn submit(client: &Client, server: &ServeProcess, spec: Value) -> String {
    let job: Value = client.post(server.url("/jobs")).json(&spec).send().await.unwrap().json().await.unwrap();
    job["id"].as_str().unwrap().to_string()
}

async fn metrics(client: &Client, server: &ServeProcess, id: &str) -> Vec<Value> {
    let m: Value = client.get(server.url(&format!("/jobs/{id}/metrics"))).send().await.unwrap().json().await.unwrap();
    m["epochs"].as_array().unwrap_or_else(|| panic!("{m}")).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_from_its_checkpoint_after_kill_9_with_exactly_one_row_per_epoch() {
    let site = Site::new();
    let first = ServeProcess::start(&site);
    let client = admin(&site);
    let id = submit(&client, &first, json!({"model": "cnn", "epochs": 8, "batch_size": 4, "augment": true})).await;
    let url = first.url(&format!("/jobs/{id}"));
    poll(&client, &url, 120, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 3).await;
    let before = metrics(&client, &first, &id).await;
    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL: no chance to clean up
    first.child.wait().unwrap();
    drop(first);

    let second = ServeProcess::start(&site);
    let url = second.url(&format!("/jobs/{id}"));
    let done = poll(&client, &url, 120, status_is("succeeded")).await;
    assert_eq!(done["attempt"], 2, "the lease expired and the job was claimed again: {done}");
    let after = metrics(&client, &second, &id).await;
    assert_eq!(after.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    // Epochs before the last recorded one were checkpointed and not trained again: their
    // rows, wall-clock times included, are untouched.
    let kept = before.len() - 1;
    assert!(kept >= 2);
    assert_eq!(after[..kept], before[..kept]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_puts_a_running_job_back_in_the_queue_without_charging_an_attempt() {
    let site = Site::new();
    let mut server = ServeProcess::start(&site);
    let client = admin(&site);
    let mode = std::fs::metadata(site.path().join("admin.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the admin token file is its owner's alone");
    let id = submit(&client, &server, json!({"model": "cnn", "epochs": 500})).await;
    poll(&client, &server.url(&format!("/jobs/{id}")), 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    let t = std::time::Instant::now();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed().as_secs() < 5, "stopped in {:?}", t.elapsed());
    drop(server);

    let server = ServeProcess::start(&site);
    let job: Value = client.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    // The restarted server may already have claimed it again (attempt 1), never 2.
    assert!(job["status"] == "queued" || job["status"] == "running", "{job}");
    let expected_attempt = if job["status"] == "queued" { 0 } else { 1 };
    assert_eq!(job["attempt"], expected_attempt, "{job}");
    assert!(job["epochs_done"].as_u64().unwrap() >= 1, "finished epochs are kept: {job}");
}

/// A `trainyard worker` child, killed when dropped (a failing test leaves none behind).
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `trainyard worker` on the same database as an API-only server.
fn start_worker(site: &Site) -> WorkerProcess {
    WorkerProcess(trainyard(site, "worker").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_workers_and_a_separate_worker_process_share_the_queue() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let quick = submit(&client, &api, json!({"model": "linear", "epochs": 2})).await;
    let long = submit(&client, &api, json!({"model": "cnn", "epochs": 500})).await;
    // The API's event stream follows a job that another process trains; nothing trains
    // until that process starts: the stream, opened before it, begins with the job queued.
    let stream = crate::helpers::SseReader::open(&client, &api.url(&format!("/jobs/{quick}/events")), None).await;
    let mut stream = crate::helpers::SseReader::new(stream);
    let first = stream.next(30).await.expect("the job's first event");
    assert_eq!((first.event.as_str(), &first.data["status"]), ("status", &json!("queued")), "{:?}", first.data);
    let worker = start_worker(&site);
    let events = stream.rest(60).await;
    let kinds: Vec<&str> = events.iter().filter(|e| e.event != "progress").map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["status", "epoch", "epoch", "status", "done"], "{events:?}");
    poll(&client, &api.url(&format!("/jobs/{quick}")), 60, status_is("succeeded")).await;
    poll(&client, &api.url(&format!("/jobs/{long}")), 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    // A cancel through the API reaches the other process at its next heartbeat: the worker
    // lets go (its one worker trains the next job), and its later writes are fenced off
    // (epochs_done stays where the cancel left it).
    let r = client.post(api.url(&format!("/jobs/{long}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let a: Value = client.get(api.url(&format!("/jobs/{long}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(a["status"], "cancelled");
    let next = submit(&client, &api, json!({"model": "linear", "epochs": 1})).await;
    poll(&client, &api.url(&format!("/jobs/{next}")), 30, status_is("succeeded")).await;
    let b: Value = client.get(api.url(&format!("/jobs/{long}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((b["status"].as_str(), &b["epochs_done"]), (Some("cancelled"), &a["epochs_done"]));
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_and_two_worker_processes_run_thirty_jobs_each_exactly_once() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(submit(&client, &api, json!({"model": "linear", "epochs": 2, "name": format!("j{i}")})).await);
    }
    let workers = [start_worker(&site), start_worker(&site)];
    let last = ids.last().unwrap().clone();
    poll(&client, &api.url(&format!("/jobs/{last}")), 120, |j| j["status"] != "queued" && j["status"] != "running")
        .await;
    let mut by_worker = std::collections::HashMap::<String, usize>::new();
    // The 30 jobs share one shape, so the workers claim them as groups: each group on one
    // worker, each job in exactly one group.
    let mut groups = std::collections::HashMap::<String, (String, u64, usize)>::new();
    for id in &ids {
        let job = poll(&client, &api.url(&format!("/jobs/{id}")), 60, status_is("succeeded")).await;
        // Each claim bumps the attempt: a job taken twice would show 2.
        assert_eq!(job["attempt"], 1, "{job}");
        *by_worker.entry(job["worker"].as_str().unwrap().to_string()).or_default() += 1;
        let (group, size) = (job["group"]["id"].as_str().unwrap(), job["group"]["size"].as_u64().unwrap());
        let g = groups.entry(group.to_string()).or_insert((job["worker"].as_str().unwrap().to_string(), size, 0));
        assert_eq!((g.0.as_str(), g.1), (job["worker"].as_str().unwrap(), size), "one group, one worker: {job}");
        g.2 += 1;
        let rows = metrics(&client, &api, id).await;
        assert_eq!(rows.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "{id}");
    }
    assert_eq!(by_worker.values().sum::<usize>(), 30);
    assert!(groups.values().all(|(_, size, seen)| *size as usize == *seen), "{groups:?}");
    assert!(groups.len() < 30, "compatible jobs trained in groups: {groups:?}");
    assert_eq!(by_worker.len(), 2, "both worker processes took jobs: {by_worker:?}");
    let listed: Value = client.get(api.url("/workers")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = listed["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    for name in by_worker.keys() {
        assert!(names.contains(&name.as_str()), "{name} in {names:?}");
    }
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_process_is_killed_is_finished_by_another_from_its_checkpoint() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let first = start_worker(&site);
    let id = submit(&client, &api, json!({"model": "cnn", "epochs": 8, "batch_size": 4, "augment": true})).await;
    let url = api.url(&format!("/jobs/{id}"));
    let running = poll(&client, &url, 120, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 3).await;
    // The second worker is idle until the first one dies.
    let second = start_worker(&site);
    let before = metrics(&client, &api, &id).await;
    drop(first); // SIGKILL: no chance to clean up

    let done = poll(&client, &url, 120, status_is("succeeded")).await;
    assert_eq!(done["attempt"], 2, "the lease expired and the job was claimed again: {done}");
    assert_ne!(done["worker"], running["worker"], "another worker finished it: {done}");
    let after = metrics(&client, &api, &id).await;
    assert_eq!(after.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    // Epochs before the last recorded one were checkpointed (in the database) and not
    // trained again: their rows, wall-clock times included, are untouched.
    let kept = before.len() - 1;
    assert!(kept >= 2);
    assert_eq!(after[..kept], before[..kept]);
    // The weights come from the database too.
    let model = client.get(api.url(&format!("/jobs/{id}/model"))).send().await.unwrap();
    assert_eq!(model.status(), 200);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only (an embedded SQLite has no connections to cut): make test runs it there"]
async fn a_worker_rides_out_its_database_connections_being_cut() {
    let site = Site::new();
    assert!(site.db.is_postgres(), "PostgreSQL only: set TRAINYARD_TEST_POSTGRES");
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let _worker = start_worker(&site);
    let id = submit(&client, &api, json!({"model": "cnn", "epochs": 6, "batch_size": 4})).await;
    let url = api.url(&format!("/jobs/{id}"));
    poll(&client, &url, 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    // Every connection of the API and the worker goes, as in a PostgreSQL restart.
    assert!(site.db.cut_connections() >= 2);
    let done = poll(&client, &url, 120, status_is("succeeded")).await;
    assert_eq!(done["attempt"], 1, "the worker kept its job through the cut: {done}");
    let rows = metrics(&client, &api, &id).await;
    assert_eq!(rows.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
}

async fn job(client: &Client, server: &ServeProcess, id: &str) -> Value {
    client.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_worker_is_killed_resumes_each_member_from_its_own_checkpoint() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    // Three compatible jobs (CNN, batch 4) that differ in lr, momentum and augmentation.
    let specs = [
        json!({"model": "cnn", "epochs": 8, "lr": 0.002}),
        json!({"model": "cnn", "epochs": 8, "lr": 0.01, "momentum": 0.5, "augment": true}),
        json!({"model": "cnn", "epochs": 6, "loss": "mse", "lr": 0.05}),
    ];
    let mut ids = Vec::new();
    for s in specs {
        ids.push(submit(&client, &api, s).await);
    }
    let first = start_worker(&site);
    for id in &ids {
        poll(&client, &api.url(&format!("/jobs/{id}")), 120, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 3).await;
    }
    let running = job(&client, &api, &ids[0]).await;
    let group = running["group"].clone();
    assert_eq!(group["size"], 3, "the three trained as one group: {running}");
    for id in &ids[1..] {
        assert_eq!(job(&client, &api, id).await["group"]["id"], group["id"]);
    }
    let second = start_worker(&site);
    let mut before = Vec::new();
    for id in &ids {
        before.push(metrics(&client, &api, id).await);
    }
    drop(first); // SIGKILL mid-group

    for (i, id) in ids.iter().enumerate() {
        let done = poll(&client, &api.url(&format!("/jobs/{id}")), 180, status_is("succeeded")).await;
        assert_eq!(done["attempt"], 2, "claimed again after the lease expired: {done}");
        assert_ne!(done["worker"], running["worker"], "{done}");
        assert_ne!(done["group"]["id"], group["id"], "a new group on the new worker: {done}");
        let after = metrics(&client, &api, id).await;
        let total = done["epochs_total"].as_u64().unwrap();
        let epochs: Vec<u64> = after.iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
        assert_eq!(epochs, (1..=total).collect::<Vec<_>>(), "exactly one row per epoch: {id}");
        // Each member's checkpointed epochs were not trained again.
        let kept = before[i].len() - 1;
        assert!(kept >= 2);
        assert_eq!(after[..kept], before[i][..kept], "member {i}");
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_job_joins_a_running_group_and_a_cancelled_member_leaves_it_alone() {
    let site = Site::new();
    let server = ServeProcess::start(&site);
    let client = admin(&site);
    let long = submit(&client, &server, json!({"model": "mlp", "epochs": 400, "batch_size": 8})).await;
    let other = submit(&client, &server, json!({"model": "mlp", "epochs": 400, "batch_size": 8, "lr": 0.01})).await;
    // The second is claimed with the first, or joins it at its first epoch boundary.
    let second = poll(&client, &server.url(&format!("/jobs/{other}")), 60, status_is("running")).await;
    let group = job(&client, &server, &long).await["group"].clone();
    assert_eq!(second["group"]["id"], group["id"], "{second}");
    assert_eq!(group["size"], 2);
    // Submitted while the group runs: it joins at the next epoch boundary (same group), and
    // an incompatible job waits for the worker.
    let late = submit(&client, &server, json!({"model": "mlp", "epochs": 2, "batch_size": 8, "lr": 0.05})).await;
    let apart = submit(&client, &server, json!({"model": "linear", "epochs": 1})).await;
    let joined = poll(&client, &server.url(&format!("/jobs/{late}")), 60, status_is("succeeded")).await;
    assert_eq!(joined["group"]["id"], group["id"], "{joined}");
    assert_eq!(joined["group"]["size"], 3);
    assert_eq!(metrics(&client, &server, &late).await.len(), 2);
    assert_eq!(job(&client, &server, &apart).await["status"], "queued", "the worker is busy with the group");
    // A cancel takes one member out; the other trains on.
    let r = client.post(server.url(&format!("/jobs/{other}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let at_cancel = job(&client, &server, &long).await["epochs_done"].as_u64().unwrap();
    poll(&client, &server.url(&format!("/jobs/{long}")), 60, |j| {
        j["epochs_done"].as_u64().unwrap_or(0) >= at_cancel + 2
    })
    .await;
    let cancelled = job(&client, &server, &other).await;
    assert_eq!(cancelled["status"], "cancelled");
    // Two more epochs of its group (each pass trains every member) after it was read.
    let frozen = cancelled["epochs_done"].clone();
    let now = job(&client, &server, &long).await["epochs_done"].as_u64().unwrap();
    poll(&client, &server.url(&format!("/jobs/{long}")), 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= now + 2)
        .await;
    assert_eq!(job(&client, &server, &other).await["epochs_done"], frozen, "a cancelled member writes nothing more");
    let r = client.post(server.url(&format!("/jobs/{long}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    poll(&client, &server.url(&format!("/jobs/{apart}")), 60, status_is("succeeded")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_data_keeps_jobs_queued_with_the_reason_and_they_run_once_it_is_fixed() {
    let site = Site::new();
    let data = site.path().join("data");
    let file = data.join("data_batch_1.bin");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() - 100]).unwrap(); // truncated
    let server = ServeProcess::start(&site);
    let client = admin(&site);
    let ready = |server: &ServeProcess| reqwest::get(server.url("/readyz"));
    let ids = [
        submit(&client, &server, json!({"model": "linear", "epochs": 1})).await,
        submit(&client, &server, json!({"model": "mlp", "epochs": 1})).await,
    ];
    // The first claim finds the data broken: the jobs wait, uncharged, and say why.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let not_ready = loop {
        let r = ready(&server).await.unwrap();
        let (status, body) = (r.status(), r.json::<Value>().await.unwrap());
        if status == 503 && body["reasons"].to_string().contains("data_batch_1.bin") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never not ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(not_ready["reasons"][0].as_str().unwrap().contains("truncated"), "{not_ready}");
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200, "still alive");
    for id in &ids {
        // N.B.: with two workers, the other may still hold its claim when the first has found
        // the data broken; its own load fails as well, and it hands the job back.
        // N.B.: a job not claimed yet is queued too, without the reason: wait for the reason.
        let j = poll(&client, &server.url(&format!("/jobs/{id}")), 20, |j| {
            j["status"] == "queued" && j["waiting_for"].is_string()
        })
        .await;
        assert_eq!((j["status"].as_str(), j["attempt"].as_u64()), (Some("queued"), Some(0)), "{j}");
        assert!(j["waiting_for"].as_str().unwrap().contains("data_batch_1.bin"), "{j}");
    }
    let q: Value = client.get(server.url("/queue")).send().await.unwrap().json().await.unwrap();
    assert!(q["problems"][0]["message"].as_str().unwrap().contains("data_batch_1.bin"), "{q}");

    // The admin restores the file: the jobs run without waiting out the retry minute.
    std::fs::write(&file, &good).unwrap();
    for id in &ids {
        let done = poll(&client, &server.url(&format!("/jobs/{id}")), 20, status_is("succeeded")).await;
        assert_eq!(done["attempt"], 1, "the failed try was not charged: {done}");
    }
    assert_eq!(ready(&server).await.unwrap().status(), 200);
    let q: Value = client.get(server.url("/queue")).send().await.unwrap().json().await.unwrap();
    assert_eq!(q["problems"], json!([]));
}

/// `cmd` run under `ulimit -v kb` (its address space capped), as a shell would.
fn capped(cmd: &Command, kb: u64) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!("ulimit -v {kb} && exec \"$@\"")).arg("bash").arg(cmd.get_program()).args(cmd.get_args());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_runs_out_of_memory_fails_alone_and_its_worker_goes_on() {
    let site = Site::new();
    // The admission limits are raised so the job gets in; the worker's memory is what stops it.
    let limits = ["--no-workers", "--max-parameters", "20000000000", "--max-job-memory-mb", "1000000"];
    let api = ServeProcess::start_with(&site, &limits);
    let client = admin(&site);
    // 65,536² weights: 17 GB for the second layer's weights alone.
    let big = submit(&client, &api, json!({"model": "mlp", "hidden": [65536, 65536], "epochs": 1})).await;
    let small = submit(&client, &api, json!({"model": "linear", "epochs": 1})).await;
    // The worker's address space: enough for libtorch and a small job, not for 17 GB.
    let worker = WorkerProcess(
        capped(&trainyard(&site, "worker"), 4 << 20).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let failed = poll(&client, &api.url(&format!("/jobs/{big}")), 60, status_is("failed")).await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("out of memory"), "{failed}");
    assert!(error.contains(&failed["parameters"].to_string()), "{failed}");
    poll(&client, &api.url(&format!("/jobs/{small}")), 60, status_is("succeeded")).await;
    drop(worker);
}

/// A listener that accepts connections and never answers: a download that hangs.
fn silent_server() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_sigterm_take_effect_while_a_worker_is_still_fetching_the_data() {
    let site = Site::new();
    std::fs::remove_dir_all(site.path().join("data")).unwrap();
    let (_hang, url) = silent_server();
    let mut server = ServeProcess::start_with(&site, &["--data-url", &url]);
    let client = admin(&site);
    let a = submit(&client, &server, json!({"model": "linear", "epochs": 1})).await;
    poll(&client, &server.url(&format!("/jobs/{a}")), 20, status_is("running")).await;
    // The worker is stuck in the download; the job's cancel is at once.
    let t = std::time::Instant::now();
    let r = client.post(server.url(&format!("/jobs/{a}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(job(&client, &server, &a).await["status"], "cancelled");
    assert!(t.elapsed().as_secs() < 2, "{:?}", t.elapsed());
    // SIGTERM stops the process within the shutdown grace, download or not.
    let t = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let grace = trainyard::server::SHUTDOWN_GRACE.as_secs();
    assert!(t.elapsed().as_secs() <= grace + 2, "stopped in {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_shown_lost_and_leaves_the_count_and_a_stopped_one_says_so() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let workers = |client: Client, url: String| async move {
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        v["workers"].as_array().unwrap().clone()
    };
    let queue_workers = |client: Client, url: String| async move {
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        v["workers"].as_u64().unwrap()
    };
    let mut doomed = start_worker(&site);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while workers(client.clone(), api.url("/workers")).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the worker never registered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed = workers(client.clone(), api.url("/workers")).await;
    assert_eq!(listed[0]["state"], "idle", "{listed:?}");
    assert_eq!(queue_workers(client.clone(), api.url("/queue")).await, 1);
    doomed.0.kill().unwrap(); // SIGKILL: it never says it stopped
    doomed.0.wait().unwrap();
    // Lease 1 s: an idle worker reports every second, and three missed reports make it lost.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = workers(client.clone(), api.url("/workers")).await;
        if listed[0]["state"] == "lost" {
            assert_eq!(listed[0]["stopped"], false);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never lost: {listed:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(queue_workers(client.clone(), api.url("/queue")).await, 0, "a lost worker is not counted");
    let r = reqwest::get(api.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503, "no live worker: not ready");
    // A worker stopped with SIGTERM says so.
    let mut calm = start_worker(&site);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while workers(client.clone(), api.url("/workers")).await.iter().all(|w| w["state"] != "idle") {
        assert!(std::time::Instant::now() < deadline, "the second worker never registered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &calm.0.id().to_string()]).status().unwrap().success());
    calm.0.wait().unwrap();
    let listed = workers(client.clone(), api.url("/workers")).await;
    let states: Vec<&str> = listed.iter().map(|w| w["state"].as_str().unwrap()).collect();
    assert_eq!(states.iter().filter(|s| **s == "stopped").count(), 1, "{listed:?}");
    assert_eq!(states.iter().filter(|s| **s == "lost").count(), 1, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_one_access_log_line_with_its_route_and_user_and_never_the_token() {
    let site = Site::new();
    let server = ServeProcess::start_with(&site, &["--no-workers"]);
    let token = std::fs::read_to_string(site.path().join("admin.token")).unwrap().trim().to_string();
    let client = admin(&site);
    let id = submit(&client, &server, json!({"model": "linear", "epochs": 1})).await;
    assert_eq!(job(&client, &server, &id).await["status"], "queued");
    let anonymous = reqwest::get(server.url("/queue")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // The anonymous request is the last one made: once its line is there, all are.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines: Vec<String> = loop {
        let lines: Vec<String> =
            server.log.lock().unwrap().iter().filter(|l| l.contains("trainyard::access")).cloned().collect();
        if lines.iter().any(|l| l.contains("route=\"/queue\"") && l.contains("status=401")) {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "no access line for the anonymous request: {lines:#?}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    };
    let find = |route: &str, status: u16| {
        lines
            .iter()
            .find(|l| l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("status={status}")))
            .cloned()
    };
    let post = find("/jobs", 201).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(post.contains("method=POST") && post.contains("user=\"admin\"") && post.contains("ms="), "{post}");
    let get = find("/jobs/{id}", 200).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(!get.contains(&id), "the route template, not the id: {get}");
    let refused = find("/queue", 401).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(refused.contains("user=\"-\""), "{refused}");
    let all = server.log.lock().unwrap().join("\n");
    assert!(!all.contains(&token), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_its_own_prometheus_metrics() {
    let site = Site::new();
    let api = ServeProcess::start_with(&site, &["--no-workers"]);
    let client = admin(&site);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let _worker = WorkerProcess(
        trainyard(&site, "worker")
            .args(["--metrics-bind", &bind])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let id = submit(&client, &api, json!({"model": "linear", "epochs": 2})).await;
    poll(&client, &api.url(&format!("/jobs/{id}")), 60, status_is("succeeded")).await;
    let url = format!("http://{bind}/metrics");
    let text = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("trainyard_jobs_finished_total{status=\"succeeded\"} 1"), "{text}");
    assert!(text.contains("trainyard_epoch_duration_seconds_count 2"), "{text}");
    assert!(
        !text.contains("trainyard_jobs{") && !text.contains("oldest_queued"),
        "the box's state is the API's to export: {text}"
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401, "a token is needed here too");
}

/// The sizes of an SQLite database's files (the database and its write-ahead log).
fn sqlite_bytes(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    [db, wal.as_path()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).max().unwrap_or(0)
}

fn set_file_size_limit(pid: u32, limit: &str) {
    let ok = Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")]).status().unwrap();
    assert!(ok.success(), "prlimit (util-linux) sets a running process's file-size limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_the_box_charges_no_job_and_ends_within_seconds_of_space_freed() {
    let site = Site::new();
    // N.B.: make test's PostgreSQL run skips this by name; the disk that fills here is
    // SQLite's (the file-size limit of its server).
    assert!(!site.db.is_postgres(), "SQLite only");
    let server = ServeProcess::start(&site);
    let client = admin(&site);
    let id = submit(&client, &server, json!({"model": "linear", "epochs": 1000, "batch_size": 10})).await;
    let job = poll(&client, &server.url(&format!("/jobs/{id}")), 60, |j| j["epochs_done"].as_u64() >= Some(2)).await;
    assert_eq!(job["attempt"], 1);
    // The disk fills: no file of the server may grow past a few KB more than it has now.
    let db = site.path().join("trainyard.db");
    let limit = sqlite_bytes(&db) + 8192;
    set_file_size_limit(server.child.id(), &limit.to_string());
    let ready = poll(&client, &server.url("/readyz"), 30, |r| r["status"] == "not ready").await;
    let reasons = ready["reasons"].to_string();
    assert!(reasons.contains("disk is full"), "{ready}");
    let r = client.post(server.url("/jobs")).json(&json!({"model": "linear"})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unavailable");
    // The outage outlasts the jobs' 1 s lease (its length is the scenario, not a wait).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    set_file_size_limit(server.child.id(), "unlimited");
    let freed = std::time::Instant::now();
    poll(&client, &server.url("/readyz"), 10, |r| r["status"] == "ready").await;
    assert!(
        freed.elapsed() < std::time::Duration::from_secs(5),
        "recovered {:?} after space was freed",
        freed.elapsed()
    );
    let r = client.post(server.url("/jobs")).json(&json!({"model": "linear", "epochs": 1})).send().await.unwrap();
    assert_eq!(r.status(), 201, "writes work again at once");
    // The running job goes on, and the box's outage was not charged to it.
    let before = job["epochs_done"].as_u64().unwrap();
    let on = poll(&client, &server.url(&format!("/jobs/{id}")), 60, |j| {
        j["status"] == "running" && j["epochs_done"].as_u64() > Some(before + 2)
    })
    .await;
    assert_eq!(on["attempt"], 1, "{on}");
    assert_eq!(client.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap().status(), 200);
    // Said once, not twice a second per worker.
    let log = server.log.lock().unwrap().clone();
    let said = log.iter().filter(|l| l.contains("the database failed")).count();
    let again = log.iter().filter(|l| l.contains("the database is still failing")).count();
    assert!((1..=2).contains(&said) && again <= 1, "{said} + {again} lines: {}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("the database takes writes again")), "{}", log.join("\n"));
    assert!(!log.iter().any(|l| l.contains("non-zero transaction depth")), "{}", log.join("\n"));
}
