//! A shared box: tokens, ownership, fair scheduling and limits.

use crate::helpers::*;
use serde_json::{json, Value};
use std::process::Command;
use trainyard::queue::{self, users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_job_is_404_everywhere_and_admins_see_all() {
    let app = spawn_app(0).await;
    let mine = app.submit(json!({"name": "alice-1", "epochs": 1})).await;
    let (_, bobs) = status_of(app.bob.post(app.url("/jobs")).json(&json!({"name": "bob-1"}))).await;
    let bobs = bobs["id"].as_str().unwrap().to_string();

    for path in [
        format!("/jobs/{mine}"),
        format!("/jobs/{mine}/metrics"),
        format!("/jobs/{mine}/plot"),
        format!("/plot?jobs={bobs},{mine}"),
    ] {
        let (status, body) = status_of(app.bob.get(app.url(&path))).await;
        assert_eq!(status, 404, "bob GET {path}");
        assert!(body["error"]["message"].as_str().unwrap().contains(&mine), "{body}");
    }
    assert_eq!(status_of(app.bob.post(app.url(&format!("/jobs/{mine}/cancel")))).await.0, 404);
    assert_eq!(app.job(&mine).await["status"], "queued", "bob's cancel changed nothing");
    assert_eq!(status_of(app.bob.patch(app.url(&format!("/jobs/{mine}"))).json(&json!({"priority": 9}))).await.0, 404);

    let names = |v: &Value| {
        v["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let (_, list) = status_of(app.bob.get(app.url("/jobs"))).await;
    assert_eq!(names(&list), ["bob-1"]);
    let (_, list) = status_of(app.admin.get(app.url("/jobs"))).await;
    assert_eq!(names(&list), ["bob-1", "alice-1"]);
    assert_eq!(list["jobs"][1]["owner"], "alice");

    assert_eq!(status_of(app.admin.get(app.url(&format!("/jobs/{mine}/metrics")))).await.0, 200);
    let (status, job) = status_of(app.admin.post(app.url(&format!("/jobs/{bobs}/cancel")))).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("cancelled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_tokens_get_401_and_a_revoked_token_stops_at_once() {
    let app = spawn_app(0).await;
    let anon = reqwest::Client::new();
    let r = anon.get(app.url("/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client_for("ty_not-a-token").get(app.url("/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let basic =
        anon.get(app.url("/jobs")).header("Authorization", format!("Basic {}", app.bob_token)).send().await.unwrap();
    assert_eq!(basic.status(), 401);

    assert_eq!(status_of(app.bob.get(app.url("/jobs"))).await.0, 200);
    users::revoke_user(&app.server.pool, "bob", queue::now_ms()).await.unwrap();
    let (status, body) = status_of(app.bob.get(app.url("/jobs"))).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));
    assert_eq!(status_of(app.client.get(app.url("/jobs"))).await.0, 200, "alice is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classmates_single_job_starts_second_behind_ten_of_one_user() {
    let app = spawn_app(1).await;
    // Alice's first job takes long enough for all the other submissions to queue behind it.
    let mut alice = vec![app.submit(json!({"model": "cnn", "epochs": 20, "batch_size": 4})).await];
    app.wait_for(&alice[0], 30, status_is("running")).await;
    for _ in 0..9 {
        alice.push(app.submit(json!({"model": "linear", "epochs": 1, "train_limit": 20})).await);
    }
    let (status, b) =
        status_of(app.bob.post(app.url("/jobs")).json(&json!({"model": "linear", "epochs": 1, "train_limit": 20})))
            .await;
    assert_eq!(status, 201);
    let bob = b["id"].as_str().unwrap().to_string();
    // While alice's first job runs, bob's is next in the queue.
    let (_, q) = status_of(app.bob.get(app.url("/queue"))).await;
    let jobs = q["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["status"], "running");
    assert_eq!(jobs[0]["owner"], "alice");
    assert!(jobs[0].get("id").is_none(), "bob sees no ids of alice's jobs: {}", jobs[0]);
    assert_eq!((jobs[1]["owner"].as_str(), jobs[1]["position"].as_u64()), (Some("bob"), Some(1)));
    assert_eq!(jobs[1]["id"], bob.as_str());
    assert!(jobs[1].get("spec").is_none() && jobs[1]["model"] == "linear");
    assert_eq!(app.job(&alice[1]).await["queue_position"], 2);

    for id in alice.iter().chain([&bob]) {
        poll(&app.admin, &app.url(&format!("/jobs/{id}")), 120, status_is("succeeded")).await;
    }
    let mut starts = Vec::new();
    for id in alice.iter().chain([&bob]) {
        let (_, j) = status_of(app.admin.get(app.url(&format!("/jobs/{id}")))).await;
        starts.push((j["started_at"].as_str().unwrap().to_string(), j["owner"].as_str().unwrap().to_string()));
    }
    // Bob's job starts before (or, grouped with them, together with) every one of alice's
    // queued jobs: they are compatible (linear, batch 4, train_limit 20), so the group that
    // the fair order starts with bob's job takes them along.
    let bob_start = starts.last().unwrap().0.clone();
    assert!(starts[1..10].iter().all(|(t, _)| *t >= bob_start), "{starts:?}");
    let (_, bob_job) = status_of(app.admin.get(app.url(&format!("/jobs/{bob}")))).await;
    let grouped = bob_job["group"]["size"].as_u64().unwrap();
    assert!(grouped >= 2, "bob's job led a group of alice's compatible jobs: {bob_job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_a_priority_that_goes_first_and_a_student_cannot() {
    let app = spawn_app(0).await;
    let first = app.submit(json!({"epochs": 1})).await;
    let second = app.submit(json!({"epochs": 1})).await;
    assert_eq!(app.job(&second).await["queue_position"], 2);
    let (status, body) =
        status_of(app.client.patch(app.url(&format!("/jobs/{second}"))).json(&json!({"priority": 5}))).await;
    assert_eq!(status, 403);
    assert!(body["error"]["message"].as_str().unwrap().contains("only admins"));
    let (status, job) =
        status_of(app.admin.patch(app.url(&format!("/jobs/{second}"))).json(&json!({"priority": 5}))).await;
    assert_eq!(status, 200);
    assert_eq!((job["priority"].as_i64(), job["queue_position"].as_u64()), (Some(5), Some(1)));
    assert_eq!(app.job(&first).await["queue_position"], 2);
    let (status, _) =
        status_of(app.admin.patch(app.url(&format!("/jobs/{second}"))).json(&json!({"priority": "high"}))).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_submissions_never_pass_the_queued_limit_and_a_retry_still_gets_its_job() {
    let app = spawn_idle(|c| c.max_queued_per_user = 5).await;
    let keyed = || app.client.post(app.url("/jobs")).header("Idempotency-Key", "k1").json(&json!({"epochs": 1}));
    let (status, first) = status_of(keyed()).await;
    assert_eq!(status, 201);
    // Twenty at once for the four places left.
    let posts = (0..20).map(|_| app.client.post(app.url("/jobs")).json(&json!({"epochs": 1})).send());
    let statuses: Vec<u16> =
        futures::future::join_all(posts).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 16, "{statuses:?}");
    let (_, mine) = app.get("/jobs?status=queued").await;
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 5);
    // At the limit, a retried submission (the same key and body) still gets its job back.
    let (status, retry) = status_of(keyed()).await;
    assert_eq!((status, &retry["id"]), (200, &first["id"]));
    // A sweep that does not fit is refused whole.
    let sweep = json!({"base": {"epochs": 1}, "vary": {"lr": [0.1, 0.01]}});
    let (status, body) = status_of(app.client.post(app.url("/sweeps")).json(&sweep)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("this sweep queues 2 jobs and you have 5 queued"));
    let (_, mine) = app.get("/jobs?status=queued").await;
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 5, "nothing of the sweep was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_answers_with_its_message() {
    let app = spawn_idle(|c| {
        c.max_queued_per_user = 2;
        c.max_epochs_per_job = 20;
        c.rate_limit = 5.0;
    })
    .await;
    app.submit(json!({"epochs": 1})).await;
    app.submit(json!({"epochs": 1})).await;
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"epochs": 1}))).await;
    assert_eq!(status, 429);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("you have 2 queued jobs; the limit is 2 per user"),
        "{body}"
    );
    assert_eq!(status_of(app.bob.post(app.url("/jobs")).json(&json!({"epochs": 1}))).await.0, 201, "per user");

    let (status, body) = status_of(app.bob.post(app.url("/jobs")).json(&json!({"epochs": 50}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "epochs");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 20 epochs per job"));

    // 5 per second, bursts of 10: twenty quick requests run into the limit.
    let mut limited = None;
    for _ in 0..20 {
        let r = app.admin.get(app.url("/queue")).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the rate limit answered 429");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("5 per second per token"));
    assert_eq!(status_of(app.bob.get(app.url("/jobs"))).await.0, 200, "other tokens are not limited");
    assert_eq!(reqwest::get(app.url("/healthz")).await.unwrap().status(), 200);
}

#[test]
fn the_users_command_adds_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let test_db = crate::db::TestDb::new(dir.path());
    let db = &test_db.url;
    // The server made the database; the admin commands never do.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { trainyard::queue::connect(db).await.unwrap().close().await });
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trainyard"))
            .arg("users")
            .args(args)
            .env("TRAINYARD_DATABASE", db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, token, _) = run(&["add", "carol"]);
    assert!(ok);
    let token = token.trim();
    assert!(token.starts_with("ty_") && token.len() == 3 + 64, "the token alone on stdout: {token:?}");
    let (ok, _, err) = run(&["add", "carol"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["add", "Carol Smith"]);
    assert!(!ok && err.contains("a-z, 0-9"), "{err}");
    assert!(run(&["add", "dave", "--admin"]).0);
    assert!(run(&["add", "ines", "--role", "instructor"]).0);
    let (ok, _, err) = run(&["add", "gus", "--role", "teacher"]);
    assert!(!ok && err.contains("student, instructor, admin"), "{err}");
    let (_, list, _) = run(&["list"]);
    let role = |name: &str| list.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().nth(1).unwrap());
    assert_eq!(
        (role("carol"), role("dave"), role("ines")),
        (Some("student"), Some("admin"), Some("instructor")),
        "{list}"
    );
    assert!(!list.contains(token), "tokens are never shown again");
    assert!(run(&["revoke", "carol"]).0);
    let (ok, _, err) = run(&["revoke", "nobody"]);
    assert!(!ok && err.contains("no user named"), "{err}");
    if !test_db.is_postgres() {
        let db_bytes = std::fs::read(dir.path().join("trainyard.db")).unwrap();
        assert!(!String::from_utf8_lossy(&db_bytes).contains(token), "only the hash is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_big_for_the_box_is_refused_at_submission_with_its_estimate_and_the_limit() {
    let app = spawn_idle(|_| {}).await;
    // 30 billion parameters: it would fill the machine's memory and take it down.
    let huge = json!({"model": "mlp", "hidden": [65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536], "epochs": 1});
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&huge)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "hidden");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("30267277322 trainable parameters") && msg.contains("at most 50000000"), "{msg}");
    // Few parameters but a huge batch: the activations are what does not fit.
    let wide = json!({"model": "mlp", "hidden": [4096], "batch_size": 50000, "epochs": 1});
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&wide)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "batch_size");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("needs about") && msg.contains("at most 4096 MB per job"), "{msg}");
    // The same in a sweep: nothing is queued.
    let sweep = json!({"base": {"model": "mlp", "epochs": 1}, "vary": {"hidden": [[120, 84], [65536, 65536]]}});
    let (status, body) = status_of(app.client.post(app.url("/sweeps")).json(&sweep)).await;
    assert_eq!(status, 422, "{body}");
    let (_, mine) = app.get("/jobs").await;
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 0, "nothing was queued");
    // The whole assignment fits with room to spare.
    let (status, body) =
        status_of(app.client.post(app.url("/sweeps")).json(&json!({"preset": "cifar10-assignment"}))).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn admins_manage_users_over_http_and_students_cannot() {
    let app = spawn_app(0).await;
    let url = |p: &str| app.url(p);
    let (s, e) = status_of(app.client.get(url("/users"))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(status_of(app.client.post(url("/users")).json(&json!({"name": "x"}))).await.0, 403);

    let (s, listed) = status_of(app.admin.get(url("/users"))).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = listed["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "alice", "bob"]);

    let (s, erin) = status_of(app.admin.post(url("/users")).json(&json!({"name": "erin"}))).await;
    assert_eq!(s, 201, "{erin}");
    assert_eq!((erin["name"].as_str(), erin["admin"].as_bool()), (Some("erin"), Some(false)));
    let first = erin["token"].as_str().unwrap().to_string();
    let (s, me) = status_of(client_for(&first).get(url("/me"))).await;
    assert_eq!((s, me["name"].as_str(), me["admin"].as_bool()), (200, Some("erin"), Some(false)));
    assert!(me["limits"]["max_epochs_per_job"].as_i64().unwrap() > 0);

    let (s, e) = status_of(app.admin.post(url("/users")).json(&json!({"name": "erin"}))).await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = status_of(app.admin.post(url("/users")).json(&json!({"name": "Erin Q"}))).await;
    assert_eq!(s, 422);
    assert!(e["error"]["message"].as_str().unwrap().contains("a-z, 0-9"), "{e}");
    let (s, e) = status_of(app.admin.post(url("/users")).json(&json!({"name": "f", "role": "teacher"}))).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("role")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("student, instructor, admin"), "{e}");
    let (s, e) =
        status_of(app.admin.post(url("/users")).json(&json!({"name": "f", "role": "instructor", "admin": true}))).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("admin")), "{e}");
    let (s, f) = status_of(app.admin.post(url("/users")).json(&json!({"name": "f", "role": "instructor"}))).await;
    assert_eq!((s, f["role"].as_str(), f["admin"].as_bool()), (201, Some("instructor"), Some(false)), "{f}");

    // A new token: the old one stops at once.
    let (s, rotated) = status_of(app.admin.post(url("/users/erin/token"))).await;
    assert_eq!(s, 200);
    let second = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(status_of(client_for(&first).get(url("/me"))).await.0, 401);
    assert_eq!(status_of(client_for(&second).get(url("/me"))).await.0, 200);

    // Revoked: the token stops, the list says when; twice is a 409; oneself is refused.
    let (s, revoked) = status_of(app.admin.post(url("/users/erin/revoke"))).await;
    assert_eq!(s, 200);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(status_of(client_for(&second).get(url("/me"))).await.0, 401);
    assert_eq!(status_of(app.admin.post(url("/users/erin/revoke"))).await.0, 409);
    let (s, e) = status_of(app.admin.post(url("/users/admin/revoke"))).await;
    assert_eq!(s, 409);
    assert!(e["error"]["message"].as_str().unwrap().contains("own token"));
    assert_eq!(status_of(app.admin.post(url("/users/admin/token"))).await.0, 409, "not one's own session");
    assert_eq!(status_of(app.admin.get(url("/me"))).await.0, 200);
    assert_eq!(status_of(app.admin.post(url("/users/nobody/token"))).await.0, 404);
    assert_eq!(
        status_of(app.client.post(url("/users/bob/revoke"))).await.0,
        403,
        "a student cannot revoke a classmate"
    );
    assert_eq!(status_of(app.bob.get(url("/me"))).await.0, 200, "and bob still works");
}
