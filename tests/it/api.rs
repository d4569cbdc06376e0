//! The HTTP API and the queue behind it, over real HTTP.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_trains_to_success_with_one_metrics_row_per_epoch() {
    let app = spawn_app(1).await;
    let r = app.post_job(json!({"name": "lin", "model": "linear", "epochs": 3, "batch_size": 10})).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(job["name"], "lin");
    assert_eq!(job["parameters"], 30730);
    assert_eq!(job["epochs_total"], 3);
    assert_eq!(job["spec"]["lr"], 0.001, "defaults are filled in: {job}");
    assert!(job["spec"]["seed"].is_u64(), "the seed is drawn and recorded: {job}");
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));

    let done = app.wait_for(id, 60, status_is("succeeded")).await;
    assert_eq!(done["epochs_done"], 3);
    assert_eq!(done["attempt"], 1);
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    let (status, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(m["job_id"], id);
    assert_eq!(m["status"], "succeeded");
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(epochs.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    for key in ["train_loss", "train_acc", "test_loss", "test_acc", "seconds"] {
        assert!(epochs[2][key].is_number(), "{key}: {}", epochs[2]);
    }
    assert!(epochs[2]["test_acc"].as_f64().unwrap() > 0.5, "{}", epochs[2]);
    let (_, since) = app.get(&format!("/jobs/{id}/metrics?since=2")).await;
    assert_eq!(since["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(since["epochs"][0]["epoch"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_appear_while_the_job_is_still_running() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "cnn", "epochs": 40, "batch_size": 4})).await;
    let url = app.url(&format!("/jobs/{id}/metrics"));
    let m = poll(&app.client, &url, 60, |m| m["epochs"].as_array().is_some_and(|e| !e.is_empty())).await;
    assert_eq!(m["status"], "running", "an epoch row is visible before the job ends: {m}");
    let job = app.job(&id).await;
    assert_eq!(job["device"], "cpu");
    assert!(job["epochs_done"].as_u64().unwrap() >= 1);
    app.cancel(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_queued_job_at_once_and_answers_409_after() {
    let app = spawn_app(0).await;
    let id = app.submit(json!({"epochs": 1})).await;
    let queued = app.job(&id).await;
    assert_eq!(queued["queue_position"], 1);
    let (status, job) = app.cancel(&id).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "cancelled");
    assert!(job["finished_at"].is_string());
    let (status, body) = app.cancel(&id).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "conflict");
    assert!(body["error"]["message"].as_str().unwrap().contains("already finished (cancelled)"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_within_a_second_and_keeps_its_epochs() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "cnn", "epochs": 500, "batch_size": 4})).await;
    let next = app.submit(json!({"model": "linear", "epochs": 1})).await;
    app.wait_for(&id, 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    let (status, job) = app.cancel(&id).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "cancelled");
    // The worker is free again within about a second: the next job runs to the end.
    let t = std::time::Instant::now();
    app.wait_for(&next, 30, |j| j["status"] != "queued").await;
    assert!(t.elapsed().as_millis() < 1500, "the worker took {:?} to let go", t.elapsed());
    app.wait_for(&next, 30, status_is("succeeded")).await;
    let kept = app.job(&id).await;
    assert_eq!(kept["status"], "cancelled");
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    let n = m["epochs"].as_array().unwrap().len() as u64;
    assert!(n >= 1 && n == kept["epochs_done"].as_u64().unwrap(), "{m} vs {kept}");
    assert_eq!(app.cancel(&id).await.0, 409);
    assert_eq!(app.cancel(&next).await.0, 409, "a succeeded job cannot be cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_error_is_listed_with_its_field() {
    let app = spawn_app(0).await;
    let r = app.post_job(json!({"learning_rate": 0.1, "epochs": 0, "model": "resnet", "lr": -1})).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_spec");
    let fields: BTreeSet<&str> =
        body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, BTreeSet::from(["learning_rate", "epochs", "model", "lr"]));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("epochs: must be an integer from 1 to 1000"), "{msg}");

    let r = app.client.post(app.url("/jobs")).body("{\"epochs\": 3,").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
    // Nothing at all (or only white space) is a slip, not the 50-epoch default: a 400 that
    // says what `{}` would queue.
    for empty in ["", "\n", "  "] {
        let r = app.client.post(app.url("/jobs")).body(empty).send().await.unwrap();
        assert_eq!(r.status(), 400, "{empty:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "empty_body");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("-d '{}'") && msg.contains("50 epochs") && msg.contains("50,000"), "{msg}");
        assert!(msg.contains("no estimate yet"), "nothing has run on this box: {msg}");
    }
    let r = app.client.post(app.url("/jobs")).body("{\"epochs\": 2, \"epochs\": 3}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["field"].as_str()),
        (Some("duplicate_key"), Some("epochs"))
    );

    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = app.client.post(app.url("/jobs")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let r = app.post_job(json!([1, 2])).await;
    assert_eq!(r.status(), 422);
    // Nothing of the above was queued.
    let (_, list) = app.get("/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(app.client.post(app.url("/jobs")).send().await.unwrap().status(), 400, "no body: refused");
    assert_eq!(app.client.post(app.url("/jobs")).body("{}").send().await.unwrap().status(), 201, "{{}}: the default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_ids_and_bad_queries_get_clear_errors() {
    let app = spawn_app(0).await;
    for path in ["/jobs/00000000-0000-0000-0000-000000000000", "/jobs/not-a-uuid", "/jobs/not-a-uuid/metrics"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(app.cancel("00000000-0000-0000-0000-000000000000").await.0, 404);
    let (status, body) = app.get("/jobs?status=done").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "status");
    assert!(body["error"]["message"].as_str().unwrap().contains("queued, running, succeeded, failed, cancelled"));
    assert_eq!(app.get("/jobs?limit=0").await.0, 400);
    assert_eq!(app.get("/jobs?cursor=abc").await.0, 400);
    let id = app.submit(json!({})).await;
    let (status, body) = app.get(&format!("/jobs/{id}/metrics?since=-1")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "since");
    let (status, body) = app.get("/nowhere").await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("openapi"));
    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_newest_first_filters_by_status_and_pages_with_a_cursor() {
    let app = spawn_app(0).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.submit(json!({"name": format!("j{i}"), "epochs": 1})).await);
    }
    app.cancel(&ids[1]).await;
    let (_, page1) = app.get("/jobs?limit=2").await;
    let names = |p: &Value| {
        p["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(&page1), ["j4", "j3"]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app.get(&format!("/jobs?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&page2), ["j2", "j1"]);
    let (_, page3) = app.get(&format!("/jobs?limit=2&cursor={}", page2["next_cursor"].as_str().unwrap())).await;
    assert_eq!(names(&page3), ["j0"]);
    assert!(page3["next_cursor"].is_null());
    let (_, cancelled) = app.get("/jobs?status=cancelled").await;
    assert_eq!(names(&cancelled), ["j1"]);
    let (_, queued) = app.get("/jobs?status=queued").await;
    let positions: Vec<u64> =
        queued["jobs"].as_array().unwrap().iter().map(|j| j["queue_position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [4, 3, 2, 1], "j0 is next; the cancelled j1 holds no place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_job_for_the_same_body_only() {
    let app = spawn_app(0).await;
    let send = |key: &'static str, body: Value| {
        let req = app.client.post(app.url("/jobs")).header("Idempotency-Key", key).json(&body);
        async move { req.send().await.unwrap() }
    };
    let first = send("k1", json!({"epochs": 2})).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send("k1", json!({"epochs": 2})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["spec"]["seed"], first["spec"]["seed"]);
    let other = send("k1", json!({"epochs": 3})).await;
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let fresh = send("k2", json!({"epochs": 2})).await;
    assert_eq!(fresh.status(), 201);
    let (_, list) = app.get("/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_posts_make_a_hundred_jobs_without_a_5xx() {
    let app = spawn_app(1).await;
    let posts = (0..100).map(|i| {
        let req = app
            .client
            .post(app.url("/jobs"))
            .json(&json!({"name": format!("c{i}"), "model": "linear", "epochs": 1, "train_limit": 20}));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let (_, list) = app.get("/jobs?limit=200").await;
    let names: BTreeSet<String> =
        list["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_when_the_data_cannot_be_had_and_runs_once_it_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(dir, |_| {}).await; // no data written; fetching from a closed port fails
                                             // Readiness knows before any job does.
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let why = ready["reasons"][0].as_str().unwrap();
    assert!(why.contains("is not in") && why.contains("the first job fetches it"), "{why}");
    let id = app.submit(json!({"epochs": 1})).await;
    // The box's fault, not the job's: it waits queued, uncharged, and says why.
    let waiting = app.wait_for(&id, 60, |j| j["waiting_for"].is_string()).await;
    let why = waiting["waiting_for"].as_str().unwrap();
    assert!(why.contains("CIFAR-10 is not in") && why.contains("cifar-10-binary.tar.gz"), "{why}");
    assert!(waiting["estimated_start"].is_null(), "no start can be promised while the data is missing: {waiting}");
    // The list says it too.
    let (_, list) = app.get("/jobs").await;
    assert_eq!(list["jobs"][0]["waiting_for"], why, "{list}");
    assert!(list["jobs"][0]["estimated_start"].is_null());
    assert_eq!((waiting["status"].as_str(), waiting["attempt"].as_u64()), (Some("queued"), Some(0)));
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reasons"][0].as_str().unwrap().contains("CIFAR-10 is not in"), "{ready}");
    // With the data in place, the waiting job trains (the directory changed: no retry wait).
    write_data(app.dir.path());
    let done = app.wait_for(&id, 60, status_is("succeeded")).await;
    assert_eq!(done["attempt"], 1);
    assert_eq!(app.get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_data_is_named_while_jobs_wait_and_is_not_charged_to_them() {
    let dir = tempfile::tempdir().unwrap();
    // Labels of a class beyond 9 cannot be: the loader refuses the directory.
    let data = write_data(dir.path());
    let f = data.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[0] = 42;
    std::fs::write(&f, bytes).unwrap();
    let app = spawn_with(dir, |_| {}).await;
    let id = app.submit(json!({"epochs": 1})).await;
    let waiting = app.wait_for(&id, 60, |j| j["waiting_for"].is_string()).await;
    assert!(waiting["waiting_for"].as_str().unwrap().contains("label 42 in record 0"), "{waiting}");
    assert_eq!(waiting["attempt"], 0, "the box's failure is not the job's");
    let (_, q) = app.get("/queue").await;
    assert!(q["problems"][0]["message"].as_str().unwrap().contains("data_batch_2.bin"), "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_openapi_agree() {
    let doc: serde_yaml::Value = serde_yaml::from_str(trainyard::api::OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let m = method.as_str().unwrap();
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                documented.insert((m.to_string(), path.as_str().unwrap().to_string()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> =
        trainyard::api::routes().iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(documented, routed);
    // Each route takes exactly the query parameters openapi.yaml lists for it.
    let shared = &doc["components"]["parameters"];
    for route in trainyard::api::routes() {
        let (method, path) = (&route.method, &route.path);
        let params = doc["paths"][*path][*method]["parameters"].as_sequence().cloned().unwrap_or_default();
        let mut listed: Vec<String> = params
            .iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => shared[r.rsplit('/').next().unwrap()].clone(),
                None => p.clone(),
            })
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let mut taken: Vec<String> = route.query.iter().map(|s| s.to_string()).collect();
        taken.sort();
        assert_eq!(listed, taken, "{method} {path}");
        // Every status the server can send on the route is documented: 400 for a bad query
        // string everywhere; 401 and 429 where a token is needed (and rate-limited); 413
        // and 422 where a body is read.
        let op = &doc["paths"][*path][*method];
        let public = op["security"].as_sequence().is_some_and(|s| s.is_empty());
        let mut must = vec!["400"];
        if !public {
            must.extend(["401", "429", "500"]);
        }
        if !op["requestBody"].is_null() {
            must.extend(["413", "422"]);
        }
        for code in must {
            assert!(!op["responses"][code].is_null(), "{method} {path} does not document {code}");
        }
    }
    let documents =
        |method: &str, path: &str, code: u16| !doc["paths"][path][method]["responses"][code.to_string()].is_null();

    // And each route answers an admin (no 404 from the router's fallback, no 405), and
    // every route but the two open ones refuses a request without a token.
    let app = spawn_app(0).await;
    let id = app.submit(json!({})).await;
    let sweep: Value = app
        .admin
        .post(app.url("/sweeps"))
        .json(&json!({"vary": {"lr": [0.1]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sweep_id = sweep["id"].as_str().unwrap();
    let anonymous = reqwest::Client::new();
    for (method, path) in &routed {
        let target = if path.starts_with("/sweeps") { sweep_id } else { id.as_str() };
        let mut url = app
            .url(&path.replace("{id}", target).replace("{name}", "bob").replace("{assignment}", "cifar10-assignment"));
        if path == "/plot" || path == "/compare" {
            url.push_str(&format!("?jobs={id}"));
        }
        let (r, anon) = match method.as_str() {
            "get" => (app.admin.get(&url), anonymous.get(&url)),
            "post" if path == "/sweeps" || path == "/sweeps/check" => {
                let body = json!({"vary": {"lr": [0.1]}});
                (app.admin.post(&url).json(&body), anonymous.post(&url).json(&body))
            }
            "post" if path == "/users" => {
                let body = json!({"name": "frank"});
                (app.admin.post(&url).json(&body), anonymous.post(&url).json(&body))
            }
            "post" if path == "/jobs/cancel" => {
                // Bob's queued jobs: none, so the other routes keep their job and sweep.
                let body = json!({"status": "queued", "owner": "bob"});
                (app.admin.post(&url).json(&body), anonymous.post(&url).json(&body))
            }
            "post" => (app.admin.post(&url).json(&json!({})), anonymous.post(&url).json(&json!({}))),
            "patch" => (
                app.admin.patch(&url).json(&json!({"priority": 1})),
                anonymous.patch(&url).json(&json!({"priority": 1})),
            ),
            other => panic!("{other}"),
        };
        let r = r.send().await.unwrap();
        if path == "/jobs/{id}/model" {
            assert_eq!(r.status(), 409, "a queued job has no weights yet");
        } else if path == "/jobs/{id}/resume" {
            assert_eq!(r.status(), 409, "a queued job did not stop early");
        } else if path == "/readyz" {
            assert_eq!(r.status(), 503, "this server has no worker: not ready");
        } else {
            assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        }
        assert!(documents(method, path, r.status().as_u16()), "{method} {path}: {} undocumented", r.status());
        let anon = anon.send().await.unwrap();
        assert!(documents(method, path, anon.status().as_u16()), "{method} {path}: {} undocumented", anon.status());
        if path == "/healthz" || path == "/openapi.yaml" {
            assert_eq!(anon.status(), 200, "{path} is open");
        } else if path == "/readyz" {
            assert_eq!(anon.status(), 503, "{path} is open");
        } else {
            assert_eq!(anon.status(), 401, "{method} {path} without a token");
            assert_eq!(anon.headers()["www-authenticate"], "Bearer");
        }
    }
    let (status, _) = app.get("/openapi.yaml").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trained_weights_download_as_safetensors_for_the_owner_only() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"name": "lin", "model": "linear", "epochs": 2})).await;
    app.wait_for(&id, 60, status_is("succeeded")).await;
    let r = app.client.get(app.url(&format!("/jobs/{id}/model"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"lin-epoch2.safetensors\"");
    let bytes = r.bytes().await.unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(names, ["fc.bias", "fc.weight"], "weights only, no momentum");
    assert_eq!(st.tensor("fc.weight").unwrap().shape(), [10, 3072]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["epoch"], "2");
    assert!(meta["spec"].contains("\"model\":\"linear\""));
    assert_eq!(app.bob.get(app.url(&format!("/jobs/{id}/model"))).send().await.unwrap().status(), 404);
    assert_eq!(app.admin.get(app.url(&format!("/jobs/{id}/model"))).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_the_workers_with_their_heartbeat_and_current_job() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "cnn", "epochs": 200})).await;
    app.wait_for(&id, 60, |j| j["epochs_done"].as_u64().unwrap_or(0) >= 1).await;
    let url = app.url("/workers");
    let listed = poll(&app.admin, &url, 10, |w| w["workers"][0]["job_id"] == id.as_str()).await;
    let workers = listed["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["device"], "cpu");
    assert_eq!(workers[0]["stopped"], false);
    assert!(workers[0]["seconds_since_heartbeat"].as_f64().unwrap() < 5.0);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    app.cancel(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_finished_things_answer_409() {
    let app = crate::helpers::spawn_app(0).await;
    let token = std::fs::read_to_string(app.dir.path().join("admin.token")).unwrap();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = reqwest::Client::new()
            .get(app.url("/jobs"))
            .header("Authorization", format!("{scheme} {}", token.trim()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // A cancelled job's priority cannot change, and a finished sweep cannot be cancelled.
    let id = app.submit(serde_json::json!({"epochs": 1})).await;
    assert_eq!(app.cancel(&id).await.0, 200);
    let r = app
        .admin
        .patch(app.url(&format!("/jobs/{id}")))
        .json(&serde_json::json!({"priority": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("already finished (cancelled)"), "{body}");
    let sweep: serde_json::Value = app
        .client
        .post(app.url("/sweeps"))
        .json(&serde_json::json!({"base": {"epochs": 1}, "vary": {"lr": [0.1, 0.01]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = sweep["id"].as_str().unwrap();
    let first = app.client.post(app.url(&format!("/sweeps/{sid}/cancel"))).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let again = app.client.post(app.url(&format!("/sweeps/{sid}/cancel"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cancels_all_their_queued_jobs_in_one_request_and_an_admin_anyones() {
    let app = crate::helpers::spawn_app(0).await;
    let mine: Vec<String> = futures::future::join_all((0..3).map(|_| app.submit(json!({"epochs": 1})))).await;
    let bobs: Value =
        app.bob.post(app.url("/jobs")).json(&json!({"epochs": 1})).send().await.unwrap().json().await.unwrap();
    let post = |client: &reqwest::Client, body: Value| client.post(app.url("/jobs/cancel")).json(&body).send();
    let r: Value = post(&app.client, json!({"status": "queued"})).await.unwrap().json().await.unwrap();
    assert_eq!(r["cancelled"], 3, "{r}");
    let mut ids: Vec<String> = r["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut expected = mine.clone();
    expected.sort();
    assert_eq!(ids, expected);
    for id in &mine {
        assert_eq!(app.job(id).await["status"], "cancelled");
    }
    // Bob's job is untouched, and a student cannot name him.
    assert_eq!(post(&app.client, json!({"status": "queued", "owner": "bob"})).await.unwrap().status(), 403);
    assert_eq!(post(&app.client, json!({"status": "running"})).await.unwrap().status(), 400);
    assert_eq!(post(&app.client, json!({"status": "queued", "stauts": 1})).await.unwrap().status(), 400);
    assert_eq!(post(&app.admin, json!({"status": "queued", "owner": "nobody"})).await.unwrap().status(), 404);
    let r: Value = post(&app.admin, json!({"status": "queued", "owner": "bob"})).await.unwrap().json().await.unwrap();
    assert_eq!((r["owner"].as_str(), r["cancelled"].as_u64()), (Some("bob"), Some(1)));
    assert_eq!(r["ids"][0], bobs["id"]);
    // Nothing left: a second request cancels nothing.
    let r: Value = post(&app.client, json!({"status": "queued"})).await.unwrap().json().await.unwrap();
    assert_eq!(r["cancelled"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_string_is_held_to_the_bodys_standard() {
    let app = spawn_app(0).await;
    let id = app.submit(json!({"epochs": 1})).await;
    for (path, bad) in [
        ("/jobs?stauts=running".to_string(), "stauts"),
        (format!("/jobs/{id}/plot?metirc=test_acc"), "metirc"),
        ("/sweeps?limit=1".to_string(), "limit"),
        (format!("/jobs/{id}?verbose=1"), "verbose"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_query", "{body}");
        assert_eq!(body["error"]["field"], bad, "{body}");
    }
    let (_, body) = app.get("/jobs?stauts=running").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("allowed: status, limit, cursor, owner"), "{body}");
    let (status, body) = app.get("/jobs?status=queued&status=running").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("given twice"), "{body}");
    // Encoded keys are read as what they say.
    assert_eq!(app.get("/jobs?st%61tus=queued").await.0, 200);
    // 405 speaks JSON too.
    let r = app.client.delete(app.url("/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    // So does a URI too long to read (a /plot of thousands of job ids).
    let ids = vec![id.as_str(); 400].join(",");
    let r = app.client.get(app.url(&format!("/plot?jobs={ids}"))).send().await.unwrap();
    assert_eq!(r.status(), 414);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("8192 bytes"), "{body}");
    // An admin lists one user's jobs; a student may name only themselves.
    let (status, mine) = app.get("/jobs?owner=alice").await;
    assert_eq!(status, 200);
    assert_eq!(mine["jobs"][0]["id"], id.as_str());
    assert_eq!(app.get("/jobs?owner=bob").await.0, 403);
    let bobs: Value = app.admin.get(app.url("/jobs?owner=bob")).send().await.unwrap().json().await.unwrap();
    assert_eq!(bobs["jobs"], json!([]), "bob has none: {bobs}");
    let all: Value = app.admin.get(app.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drops_finished_jobs_checkpoints_past_the_retention_setting() {
    let dir = tempfile::tempdir().unwrap();
    crate::helpers::write_data(dir.path());
    // Kept 2 s (so checked every second), where a lab would keep them for weeks.
    let app = crate::helpers::spawn_with(dir, |c| c.keep_checkpoints_days = 2.0 / 86_400.0).await;
    let id = app.submit(json!({"model": "linear", "epochs": 1})).await;
    app.wait_for(&id, 60, status_is("succeeded")).await;
    let url = app.url(&format!("/jobs/{id}/model"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let gone = loop {
        let r = app.client.get(&url).send().await.unwrap();
        if r.status() == 409 {
            break r.json::<Value>().await.unwrap();
        }
        assert_eq!(r.status(), 200);
        assert!(std::time::Instant::now() < deadline, "the checkpoint was never dropped");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(gone["error"]["message"].as_str().unwrap().contains("retention"), "{gone}");
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(m["epochs"].as_array().unwrap().len(), 1, "the metrics stay: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_download_as_csv_with_the_json_rows_numbers() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"name": "lr 0.1", "model": "linear", "epochs": 2, "lr": 0.1})).await;
    app.wait_for(&id, 60, status_is("succeeded")).await;
    let r = app.client.get(app.url(&format!("/jobs/{id}/metrics?format=csv"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("lr_0_1-metrics.csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,train_loss,train_acc,test_loss,test_acc,seconds,train_seconds,samples_per_second,diverged,lr"
    );
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    let rows = m["epochs"].as_array().unwrap();
    assert_eq!(lines.len(), 1 + rows.len());
    for (line, row) in lines[1..].iter().zip(rows) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], row["epoch"].to_string());
        assert_eq!(cells[2].parse::<f64>().unwrap(), row["train_acc"].as_f64().unwrap());
        assert_eq!(cells[3].parse::<f64>().unwrap(), row["test_loss"].as_f64().unwrap());
        assert_eq!(cells[9].parse::<f64>().unwrap(), row["lr"].as_f64().unwrap());
    }
    let (status, body) = app.get(&format!("/jobs/{id}/metrics?format=xml")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("format")));
}

#[tokio::test]
async fn a_job_shows_its_latest_epoch_in_the_list_and_alone() {
    let app = spawn_app(1).await;
    let id = app.submit(json!({"model": "linear", "epochs": 2})).await;
    let queued = app.job(&id).await;
    assert!(queued["last_epoch"].is_null() || queued["epochs_done"] != 0, "{queued}");
    app.wait_for(&id, 60, status_is("succeeded")).await;
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    let last = &m["epochs"][1];
    let (_, list) = app.get("/jobs").await;
    let listed = &list["jobs"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(&listed["last_epoch"], last, "the list's latest epoch is /metrics' last row");
    assert_eq!(&app.job(&id).await["last_epoch"], last);
}

#[tokio::test]
async fn the_spec_route_lists_every_field_the_server_checks_with_its_default() {
    let app = spawn_app(0).await;
    let (s, docs) = app.get("/spec").await;
    assert_eq!(s, 200);
    let fields = docs["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, trainyard::spec::field_names());
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(field("batch_size")["default"], 4);
    assert_eq!(field("model")["choices"], json!(["cnn", "linear", "mlp", "custom"]));
    assert_eq!(field("hidden")["models"], json!(["mlp"]));
    // The bound shown is the bound enforced.
    let max = field("batch_size")["max"].as_f64().unwrap() as u64;
    assert_eq!(app.post_job(json!({"batch_size": max + 1})).await.status(), 422);
    assert_eq!(client_for("nope").get(app.url("/spec")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_web_page_is_served_with_its_files_and_a_strict_content_policy() {
    let app = spawn_app(0).await;
    let plain = reqwest::Client::new();
    let r = plain.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the page itself needs no token");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = r.text().await.unwrap();
    for (path, _, _) in trainyard::api::web::FILES.iter().filter(|f| f.0 != "/" && !f.0.ends_with(".txt")) {
        assert!(html.contains(&format!("\"{path}\"")), "the page loads {path}");
        let r = plain.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another host");
    // Asked again, an unchanged file is a 304 without a body.
    let r = plain.get(app.url("/ui/app.js")).send().await.unwrap();
    let tag = r.headers()["etag"].clone();
    let again = plain.get(app.url("/ui/app.js")).header("if-none-match", tag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let js = plain.get(app.url("/ui/app.js")).send().await.unwrap().text().await.unwrap();
    assert!(js.contains("sessionStorage") && !js.contains("localStorage"), "the token stays in the tab");
    assert!(!js.contains("?token="), "the token never goes in a URL");
}

#[test]
fn metrics_read_back_from_json_keep_every_digit() {
    // serde_json's default float parser may miss by an ulp (this value did, in the CSV test):
    // float_roundtrip makes the JSON rows and the CSV agree exactly.
    let s = "2.1159428342798497e-7";
    assert_eq!(serde_json::from_str::<f64>(s).unwrap(), s.parse::<f64>().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_value_that_no_longer_reads_is_an_error_naming_the_job_and_a_bad_spec_fails_at_claim() {
    let app = spawn_app(1).await;
    let done = app.submit(json!({"model": "linear", "epochs": 1})).await;
    app.wait_for(&done, 60, status_is("succeeded")).await;
    // A damaged epoch row: /metrics fails and the error names the job and the epoch; the
    // row is not silently dropped.
    let bad = r#"{"epoch": "one"}"#;
    app.db.execute(&format!("UPDATE epochs SET metrics = '{bad}' WHERE job_id = '{done}'")).await;
    let (status, _) = app.get(&format!("/jobs/{done}/metrics")).await;
    assert_eq!(status, 500);
    let why = trainyard::queue::get_metrics(&app.server.pool, &done, 0).await.unwrap_err().to_string();
    assert!(why.contains(&format!("job {done}'s epoch 1")), "{why}");
    // A stored spec that no longer parses: the job is still listed (its spec null) and its
    // worker fails it at the claim, saying why. The worker is busy meanwhile with a long job.
    let long = app.submit(json!({"model": "cnn", "epochs": 100, "batch_size": 1})).await;
    app.wait_for(&long, 60, status_is("running")).await;
    let queued = app.submit(json!({"model": "linear", "epochs": 1})).await;
    let damaged = r#"{"model": "resnet", "seed": 1}"#;
    app.db.execute(&format!("UPDATE jobs SET spec = '{damaged}' WHERE id = '{queued}'")).await;
    assert!(app.job(&queued).await["spec"].is_null());
    app.cancel(&long).await;
    let failed = app.wait_for(&queued, 60, status_is("failed")).await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("model") && error.contains("resnet"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_layers_is_checked_at_submission_trains_and_exports_its_running_statistics() {
    let app = spawn_app(1).await;
    // Every problem at once, each naming its layer by its path.
    let r = app
        .post_job(json!({"layers": [{"conv2d": {"out": 4, "kernel": 5}}, {"maxpool2d": 5}, {"conv2d": {"out": 4, "kernel": 7}},
            "softmax", "flatten", {"linear": 10}], "lr": -1}))
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> =
        body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["lr", "layers[3]"], "options first; shapes once every layer reads: {body}");
    let r = app.post_job(json!({"layers": [{"conv2d": {"out": 4, "kernel": 5}}, {"maxpool2d": 5}, {"conv2d": {"out": 4, "kernel": 7}}, "flatten", {"linear": 7}]})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["fields"][0]["field"], "layers[2].conv2d.kernel");
    assert_eq!(body["error"]["fields"][0]["message"], "7 is larger than its 5×5 input");
    let r = app.post_job(json!({"model": "cnn", "layers": ["flatten", {"linear": 10}]})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["fields"][0]["field"], "layers", "{body}");
    // Too large for the server's limit: the layers are named.
    let r = app.post_job(json!({"layers": ["flatten", {"linear": 65536}, {"linear": 10}]})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_spec");
    assert_eq!(body["error"]["fields"][0]["field"], "layers", "{body}");

    let layers = json!([{"conv2d": {"out": 4, "kernel": 3, "stride": 2}}, "batchnorm", "relu", "flatten", {"dropout": 0.1}, {"linear": 10}]);
    let id = app.submit(json!({"name": "mine", "layers": layers, "epochs": 2, "batch_size": 10})).await;
    let done = app.wait_for(&id, 60, status_is("succeeded")).await;
    assert_eq!(done["spec"]["model"], "custom");
    assert_eq!(done["spec"]["layers"][0], json!({"conv2d": {"out": 4, "kernel": 3, "stride": 2, "padding": 0}}));
    assert_eq!(done["parameters"], 4 * 27 + 4 + 8 + 4 * 15 * 15 * 10 + 10);
    assert!(done["spec"].get("activation").is_none(), "{done}");
    let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(m["epochs"].as_array().unwrap().len(), 2);
    // The returned spec, sent back, is the same job.
    let again = app.post_job(done["spec"].clone()).await;
    assert_eq!(again.status(), 201);
    let bytes = app.client.get(app.url(&format!("/jobs/{id}/model"))).send().await.unwrap().bytes().await.unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["0.bias", "0.weight", "1.bias", "1.running_mean", "1.running_var", "1.weight", "5.bias", "5.weight"]
    );
}

#[tokio::test]
async fn a_spec_check_plans_the_network_layer_by_layer_and_queues_nothing() {
    let app = spawn_app(0).await;
    let layers = json!([
      {"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool2d": 2},
      {"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu",
      {"residual": [{"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu"]},
      "global_avgpool", "flatten", {"dropout": 0.2}, {"linear": 10}
    ]);
    let r = app.client.post(app.url("/spec/check")).json(&json!({"layers": layers})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["accepted"], true, "{c}");
    assert_eq!(c["network"]["parameters"], 14_826);
    assert_eq!(c["network"]["summary"], "conv16-bn-relu-pool-conv32-bn-relu-res(conv32-bn-relu)-gap-drop0.2-fc10");
    let rows = c["network"]["layers"].as_array().unwrap();
    let row =
        |path: &str| rows.iter().find(|l| l["path"] == path).unwrap_or_else(|| panic!("{path}: {rows:?}")).clone();
    assert_eq!(
        (row("layers[0]")["output"].clone(), row("layers[0]")["parameters"].clone()),
        (json!([16, 32, 32]), json!(448))
    );
    assert_eq!(row("layers[3]")["output"], json!([16, 16, 16]));
    assert_eq!(row("layers[7]")["parameters"], 9_248 + 64, "a residual block counts its body");
    assert_eq!(row("layers[7].residual[1]")["parameters"], 64);
    assert_eq!(row("layers[8]")["output"], json!([32, 1, 1]));
    assert_eq!(row("layers[11]")["output"], json!([10]));
    assert!(c["spec"]["seed"].is_null(), "a check draws no seed: {c}");
    // What does not fit is said as POST /jobs would say it.
    let r = app
        .client
        .post(app.url("/spec/check"))
        .json(&json!({"layers": ["flatten", {"linear": 7}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["error"]["fields"][0]["field"], "layers[1]");
    let r = app
        .client
        .post(app.url("/spec/check"))
        .json(&json!({"model": "mlp", "hidden": [65536, 65536]}))
        .send()
        .await
        .unwrap();
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["accepted"], false, "over the server's limits: {c}");
    assert_eq!(c["errors"][0]["field"], "hidden");
    assert!(c["network"]["parameters"].as_i64().unwrap() > 4_000_000_000);
    let (_, list) = app.get("/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "a check queues nothing");
    // GET /spec documents every layer kind.
    let (_, docs) = app.get("/spec").await;
    let kinds: Vec<&str> = docs["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 14);
    assert!(kinds.contains(&"residual") && kinds.contains(&"batchnorm") && kinds.contains(&"gelu"), "{kinds:?}");
}
