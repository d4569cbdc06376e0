//! spawn_app(): a real server on 127.0.0.1 port 0, a database of its own (SQLite in a temp
//! dir, or PostgreSQL: see `db`), and the tests' own small dataset.

use crate::db::TestDb;
use reqwest::{Client, Response};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trainyard::config::ServeConfig;
use trainyard::queue::users;
use trainyard::server::{self, Server};

pub struct TestApp {
    /// Dropped first: the server's workers stop when the test ends.
    _stop: server::ShutdownOnDrop,
    pub base: String,
    /// Alice's client: the tests' ordinary student.
    pub client: Client,
    pub bob: Client,
    pub admin: Client,
    pub bob_token: String,
    pub dir: tempfile::TempDir,
    /// Held for the test's length: dropping it shuts the server down.
    pub server: Server,
    /// Dropped after the server.
    pub db: TestDb,
}

/// The small learnable dataset, written once per directory.
pub fn write_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    trainyard::train::data::write_synthetic(&data, 100, 200, 9).unwrap();
    data
}

pub fn config(dir: &Path, database: &str, workers: usize) -> ServeConfig {
    ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        database: database.to_string(),
        data_dir: dir.join("data"),
        no_workers: false,
        workers_per_gpu: 1,
        cpu_workers: Some(workers),
        threads_per_worker: Some(1),
        lease_seconds: 1.0,
        retry_seconds: 60.0,
        keep_checkpoints_days: 90.0,
        class_band: true,
        class_min_students: 3,
        forget_workers_seconds: 3600.0,
        metrics_bind: None,
        max_attempts: 3,
        max_queued_per_user: 1000,
        max_epochs_per_job: 1000,
        max_parameters: 50_000_000,
        max_job_memory_mb: 4096,
        max_running_per_user: 0,
        max_group: None,
        rate_limit: 0.0,
        max_streams_per_user: 8,
        admin_token_file: dir.join("admin.token"),
        data_url: "http://127.0.0.1:9/unreachable".into(),
        data_md5: trainyard::fetch::OFFICIAL_MD5.into(),
        // N.B.: no test fetches a dataset from the internet.
        data_mirror: Some("http://127.0.0.1:9/unreachable".into()),
        datasets_in_memory: 3,
        header_timeout_seconds: 10.0,
        init: false,
        state_dir: Some(dir.join("state")),
        max_connections: 1024,
    }
}

pub async fn spawn_app(workers: usize) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    spawn_with(dir, |cfg| cfg.cpu_workers = Some(workers)).await
}

/// A server whose workers never claim (what is queued stays queued), with the small data
/// and `adjust`'s settings.
pub async fn spawn_idle(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    spawn_with(dir, |c| {
        c.cpu_workers = Some(0);
        adjust(c);
    })
    .await
}

/// A request's status and its JSON body (null when it has none).
pub async fn status_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub async fn spawn_with(dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let db = TestDb::new(dir.path());
    let mut cfg = config(dir.path(), &db.url, 1);
    adjust(&mut cfg);
    let token_file = cfg.admin_token_file.clone();
    let server = server::start(cfg).await.unwrap();
    let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let now = trainyard::queue::now_ms();
    let (_, alice) = users::add_user(&server.pool, "alice", trainyard::queue::users::Role::Student, now).await.unwrap();
    let (_, bob) = users::add_user(&server.pool, "bob", trainyard::queue::users::Role::Student, now).await.unwrap();
    TestApp {
        _stop: server.shutdown_on_drop(),
        base: format!("http://{}", server.addr),
        client: client_for(&alice),
        bob: client_for(&bob),
        admin: client_for(&admin),
        bob_token: bob,
        dir,
        server,
        db,
    }
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub fn client_for(token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_job(&self, body: Value) -> Response {
        self.client.post(self.url("/jobs")).json(&body).send().await.unwrap()
    }

    /// Submits a job that must be accepted; returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let r = self.post_job(body).await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn job(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        let r = self.client.post(self.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Polls the job until `done` holds for it (at most `secs`).
    pub async fn wait_for(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        poll(&self.client, &self.url(&format!("/jobs/{id}")), secs, done).await
    }
}

pub async fn poll(client: &Client, url: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job: Value = match client.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {url}; last: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["status"] == s
}

/// One Server-Sent Event as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// Reads an event stream: `next` gives each event in turn (keep-alive comments skipped),
/// `None` when the server closed it.
pub struct SseReader {
    response: Response,
    buffer: String,
}

impl SseReader {
    pub async fn open(client: &Client, url: &str, last_event_id: Option<&str>) -> Response {
        let mut r = client.get(url);
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id);
        }
        r.send().await.unwrap()
    }

    pub fn new(response: Response) -> SseReader {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { response, buffer: String::new() }
    }

    /// The next event, waiting at most `secs`.
    pub async fn next(&mut self, secs: u64) -> Option<Sse> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(Sse { event, id, data: serde_json::from_str(&data).unwrap() });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {secs} s; buffered: {:?}", self.buffer);
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => return None,
                Err(_) => panic!("no event within {secs} s"),
            }
        }
    }

    /// Every event until the server closes the stream.
    pub async fn rest(&mut self, secs: u64) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next(secs).await {
            out.push(e);
        }
        out
    }
}

/// A SQLite database (in its own temp dir) as migration `version` left it, and the migrator
/// of every migration, to test the next ones on rows an older server wrote.
pub async fn sqlite_at_migration(version: i64) -> (tempfile::TempDir, sqlx::SqlitePool, sqlx::migrate::Migrator) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().foreign_keys(true))
        .await
        .unwrap();
    let all = sqlx::migrate!("./migrations/sqlite");
    let mut old = sqlx::migrate!("./migrations/sqlite");
    old.migrations = all.migrations.iter().filter(|m| m.version <= version).cloned().collect::<Vec<_>>().into();
    old.run(&pool).await.unwrap();
    (dir, pool, all)
}
