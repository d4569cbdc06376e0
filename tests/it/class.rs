//! Roles and the class view: what each role may do on every route, and the instructor's
//! table of one assignment across students.

use crate::helpers::*;
use reqwest::Client;
use serde_json::{json, Value};
use trainyard::job::{EpochMetrics, JobStatus};
use trainyard::queue::{self, Lease};

const ASSIGNMENT: &str = "cifar10-assignment";

fn epoch(n: u32, test_acc: f64, diverged: bool) -> EpochMetrics {
    EpochMetrics {
        epoch: n,
        train_loss: if diverged { None } else { Some(1.0) },
        train_acc: test_acc,
        test_loss: if diverged { None } else { Some(1.0) },
        test_acc,
        seconds: 0.1,
        train_seconds: 0.1,
        samples_per_second: 1.0,
        diverged,
        lr: Some(0.001),
    }
}

/// A user made by the admin through the API, with their client.
async fn add(app: &TestApp, name: &str, role: &str) -> Client {
    let (s, u) = status_of(app.admin.post(app.url("/users")).json(&json!({"name": name, "role": role}))).await;
    assert_eq!((s, u["role"].as_str()), (201, Some(role)), "{u}");
    client_for(u["token"].as_str().unwrap())
}

async fn post_sweep(client: &Client, app: &TestApp, body: Value) -> String {
    let (s, sweep) = status_of(client.post(app.url("/sweeps")).json(&body)).await;
    assert_eq!(s, 201, "{sweep}");
    sweep["id"].as_str().unwrap().to_string()
}

async fn submit(client: &Client, app: &TestApp) -> String {
    let (s, job) = status_of(client.post(app.url("/jobs")).json(&json!({"epochs": 1, "train_limit": 40}))).await;
    assert_eq!(s, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_role_table_says() {
    let app = spawn_idle(|_| {}).await;
    let ines = add(&app, "ines", "instructor").await;
    let (alice, bob, admin) = (&app.client, &app.bob, &app.admin);
    let job = submit(alice, &app).await;
    let job2 = submit(alice, &app).await;
    let sweep = post_sweep(alice, &app, json!({"preset": ASSIGNMENT, "overrides": {"train_limit": 40}})).await;
    for name in ["temp1", "temp2"] {
        add(&app, name, "student").await;
    }
    let spec = json!({"epochs": 1});
    let a = "/class/cifar10-assignment";
    // (method, path, body, [(who, status)]) in order: a route that changes something is
    // asked by those refused first, then by one who may.
    type Row<'a> = (&'a str, String, Value, Vec<(&'a str, u16)>);
    let all = |s: u16| vec![("alice", s), ("bob", s), ("ines", s), ("admin", s)];
    let own = |s: u16| vec![("alice", s), ("bob", 404), ("ines", s), ("admin", s)];
    let admin_only = |s: u16| vec![("alice", 403), ("bob", 403), ("ines", 403), ("admin", s)];
    let readers = |s: u16| vec![("alice", 403), ("bob", 403), ("ines", s), ("admin", s)];
    let n = Value::Null;
    let table: Vec<Row> = vec![
        ("get", "/healthz".into(), n.clone(), all(200)),
        // N.B.: a server with no worker is not ready, whoever asks.
        ("get", "/readyz".into(), n.clone(), all(503)),
        ("get", "/openapi.yaml".into(), n.clone(), all(200)),
        ("get", "/metrics".into(), n.clone(), admin_only(200)),
        ("get", "/spec".into(), n.clone(), all(200)),
        ("post", "/spec/check".into(), spec.clone(), all(200)),
        ("get", "/datasets".into(), n.clone(), all(200)),
        ("post", "/jobs".into(), json!({"epochs": 1, "train_limit": 40}), all(201)),
        ("get", "/jobs".into(), n.clone(), all(200)),
        ("get", format!("/jobs/{job}"), n.clone(), own(200)),
        (
            "patch",
            format!("/jobs/{job}"),
            json!({"priority": 1}),
            vec![("bob", 404), ("alice", 403), ("ines", 403), ("admin", 200)],
        ),
        ("get", format!("/jobs/{job}/metrics"), n.clone(), own(200)),
        ("get", format!("/jobs/{job}/model"), n.clone(), own(409)),
        ("get", format!("/jobs/{job}/events"), n.clone(), own(200)),
        ("get", format!("/jobs/{job}/plot"), n.clone(), own(200)),
        ("get", format!("/plot?jobs={job}"), n.clone(), own(200)),
        ("get", format!("/compare?jobs={job}"), n.clone(), own(200)),
        (
            "post",
            format!("/jobs/{job}/resume"),
            n.clone(),
            vec![("bob", 404), ("ines", 403), ("alice", 409), ("admin", 409)],
        ),
        ("post", format!("/sweeps/{sweep}/cancel"), n.clone(), vec![("bob", 404), ("ines", 403), ("alice", 200)]),
        ("post", format!("/jobs/{job}/cancel"), n.clone(), vec![("bob", 404), ("ines", 403), ("alice", 200)]),
        ("post", format!("/jobs/{job2}/cancel"), n.clone(), vec![("ines", 403), ("admin", 200)]),
        (
            "post",
            "/jobs/cancel".into(),
            json!({"status": "queued", "owner": "alice"}),
            vec![("bob", 403), ("ines", 403), ("admin", 200)],
        ),
        ("get", "/queue".into(), n.clone(), all(200)),
        ("get", "/workers".into(), n.clone(), readers(200)),
        ("get", "/events".into(), n.clone(), all(200)),
        ("post", "/sweeps/check".into(), json!({"preset": ASSIGNMENT}), all(200)),
        ("get", "/sweeps".into(), n.clone(), all(200)),
        (
            "get",
            "/sweeps?owner=alice".into(),
            n.clone(),
            vec![("alice", 200), ("bob", 403), ("ines", 200), ("admin", 200)],
        ),
        (
            "get",
            "/jobs?owner=alice".into(),
            n.clone(),
            vec![("alice", 200), ("bob", 403), ("ines", 200), ("admin", 200)],
        ),
        ("get", format!("/sweeps/{sweep}"), n.clone(), own(200)),
        ("get", format!("/sweeps/{sweep}/plot"), n.clone(), own(200)),
        ("get", format!("/sweeps/{sweep}/plot?class=true"), n.clone(), own(200)),
        ("get", format!("/sweeps/{sweep}/report"), n.clone(), own(200)),
        ("post", "/sweeps".into(), json!({"base": {"epochs": 1}, "vary": {"lr": [0.1]}}), all(201)),
        ("get", a.into(), n.clone(), all(200)),
        ("get", format!("{a}?format=csv"), n.clone(), all(200)),
        ("get", format!("{a}/plot"), n.clone(), all(200)),
        ("get", format!("{a}/plot?kind=final"), n.clone(), readers(200)),
        ("get", format!("{a}/report"), n.clone(), readers(200)),
        ("get", "/me".into(), n.clone(), all(200)),
        ("get", "/users".into(), n.clone(), admin_only(200)),
        ("post", "/users".into(), json!({"name": "newcomer"}), admin_only(201)),
        ("post", "/users/temp1/revoke".into(), n.clone(), admin_only(200)),
        ("post", "/users/temp2/token".into(), n.clone(), admin_only(200)),
    ];
    let client = |who: &str| match who {
        "alice" => alice,
        "bob" => bob,
        "ines" => &ines,
        _ => admin,
    };
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &table {
        for (who, want) in expected {
            let c = client(who);
            let url = app.url(path);
            let req = match *method {
                "get" => c.get(&url),
                "post" => c.post(&url),
                _ => c.patch(&url),
            };
            let req = if body.is_null() { req } else { req.json(body) };
            let got = req.send().await.unwrap().status().as_u16();
            if got != *want {
                wrong.push(format!("{} {path} as {who}: {got}, expected {want}", method.to_uppercase()));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // N.B.: the table covers every route the API has; a new route must be added to it.
    for route in trainyard::api::routes() {
        let known = table.iter().any(|(m, p, _, _)| {
            let path = p.split('?').next().unwrap();
            fn shape(s: &str) -> Vec<&str> {
                s.split('/').map(|seg| if seg.starts_with('{') { "*" } else { seg }).collect()
            }
            *m == route.method
                && shape(route.path).len() == shape(path).len()
                && shape(route.path).iter().zip(path.split('/')).all(|(r, s)| *r == "*" || *r == s)
        });
        assert!(known, "the role table lacks {} {}", route.method, route.path);
    }
    // What an instructor reads is everyone's; what a student reads is their own.
    let (_, jobs) = status_of(ines.get(app.url("/jobs?limit=200"))).await;
    assert!(jobs["jobs"].as_array().unwrap().iter().any(|j| j["owner"] == "alice"), "{jobs}");
    let (_, jobs) = status_of(bob.get(app.url("/jobs?limit=200"))).await;
    assert!(jobs["jobs"].as_array().unwrap().iter().all(|j| j["owner"] == "bob"), "{jobs}");
    let (_, me) = status_of(ines.get(app.url("/me"))).await;
    assert_eq!((me["role"].as_str(), me["admin"].as_bool()), (Some("instructor"), Some(false)), "{me}");
}

/// What to do with a claimed job of the class test: epochs to record (test accuracy,
/// diverged), then how it ends (`None`: it stays running; `Some(Queued)`: it goes back).
fn plan(owner: &str, name: &str) -> (Vec<(f64, bool)>, Option<JobStatus>) {
    let ok = |acc: f64| (vec![(acc - 0.1, false), (acc, false)], Some(JobStatus::Succeeded));
    match (owner, name) {
        ("alice", _) => ok(0.50),
        ("dan", _) => ok(0.51),
        ("bob", "tutorial CNN" | "linear" | "MLP with ReLU" | "MLP without activation" | "batch 1" | "batch 1000") => {
            ok(0.52)
        }
        ("bob", "lr 0.1") => (vec![(0.3, false)], None),
        ("bob", _) => (vec![], Some(JobStatus::Queued)),
        ("carol", "tutorial CNN") => ok(0.20),
        ("carol", "MLP with ReLU") => (vec![(0.1, false), (0.105, false)], Some(JobStatus::Succeeded)),
        ("carol", "lr 0.1") => (vec![(0.3, false)], Some(JobStatus::Failed)),
        ("carol", "lr 0.01") => (vec![(0.1, true), (0.1, true)], Some(JobStatus::Succeeded)),
        ("carol", _) => ok(0.505),
        _ => unreachable!("{owner} {name}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_table_shows_each_students_newest_submission_with_its_flags() {
    let app = spawn_idle(|_| {}).await;
    let ines = add(&app, "ines", "instructor").await;
    let carol = add(&app, "carol", "student").await;
    let dan = add(&app, "dan", "student").await;
    let preset = json!({"preset": ASSIGNMENT, "overrides": {"train_limit": 40}});
    // Bob's first try was cancelled; his second is the one the class sees.
    let first = post_sweep(&app.bob, &app, preset.clone()).await;
    let (s, _) = status_of(app.bob.post(app.url(&format!("/sweeps/{first}/cancel")))).await;
    assert_eq!(s, 200);
    let mut sweeps = vec![];
    for c in [&app.client, &app.bob, &carol] {
        sweeps.push(post_sweep(c, &app, preset.clone()).await);
    }
    sweeps.push(
        post_sweep(&dan, &app, json!({"preset": ASSIGNMENT, "overrides": {"epochs": 5, "train_limit": 40}})).await,
    );
    // A sweep of no assignment is not in the class view.
    post_sweep(&app.client, &app, json!({"base": {"epochs": 1}, "vary": {"lr": [0.1]}})).await;

    // Drive the queue as a worker would: every job claimed, its epochs recorded, ended.
    let pool = app.server.pool.clone();
    let now = queue::now_ms();
    let mut back = Vec::new();
    while let Some(c) = queue::claim_next_job(&pool, "w/cpu:0", "cpu", now, 600_000, 0).await.unwrap() {
        let row = queue::get_job(&pool, &c.id).await.unwrap().unwrap();
        let (epochs, end) = match row.name.as_deref() {
            Some(name) => plan(&row.owner, name),
            None => (vec![(0.3, false)], Some(JobStatus::Succeeded)), // alice's grid
        };
        let lease: Lease = c.lease();
        for (i, (acc, diverged)) in epochs.iter().enumerate() {
            let e = epoch(i as u32 + 1, *acc, *diverged);
            assert!(lease.record_epoch(&pool, i as i64 + 1, &e, now, 600_000).await.unwrap());
        }
        match end {
            Some(JobStatus::Queued) => back.push(lease),
            Some(status) => assert!(lease
                .finish(&pool, status, Some("boom").filter(|_| status == JobStatus::Failed), now)
                .await
                .unwrap()),
            None => {}
        }
    }
    for lease in back {
        assert!(lease.release(&pool, now).await.unwrap());
    }

    let (s, class) = status_of(ines.get(app.url(&format!("/class/{ASSIGNMENT}")))).await;
    assert_eq!(s, 200, "{class}");
    let rows = class["students"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["student"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dan"]);
    let row = |n: &str| rows.iter().find(|r| r["student"] == n).unwrap();
    let kinds = |n: &str| -> Vec<(String, String)> {
        row(n)["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["kind"].as_str().unwrap().to_string(), f["label"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    // Alice is done and unremarkable.
    let alice = row("alice");
    assert_eq!((alice["jobs"]["succeeded"].as_u64(), alice["completion"].as_f64()), (Some(12), Some(1.0)), "{alice}");
    assert_eq!(alice["sweep"], sweeps[0].as_str());
    assert!(kinds("alice").is_empty(), "{:?}", kinds("alice"));
    let tutorial = alice["runs"].as_array().unwrap().iter().find(|c| c["section"] == "tutorial").unwrap();
    assert_eq!((tutorial["final_test_acc"].as_f64(), tutorial["best_test_acc"].as_f64()), (Some(0.5), Some(0.5)));
    // Bob is half way, running, with his first sweep reachable.
    let bob = row("bob");
    let j = &bob["jobs"];
    assert_eq!(
        (j["succeeded"].as_u64(), j["running"].as_u64(), j["queued"].as_u64(), bob["completion"].as_f64()),
        (Some(6), Some(1), Some(5), Some(0.5)),
        "{bob}"
    );
    assert_eq!(bob["sweep"], sweeps[1].as_str());
    assert_eq!(bob["earlier_sweeps"][0]["id"], first.as_str());
    assert!(kinds("bob").is_empty(), "a run still to come is no flag: {:?}", kinds("bob"));
    // Carol's failed, diverged, at-chance and far-off runs are flagged, each once.
    let carol_flags = kinds("carol");
    for want in [
        ("failed", "lr 0.1"),
        ("diverged", "lr 0.01"),
        ("at_chance", "MLP with ReLU"),
        ("far_from_median", "tutorial CNN"),
    ] {
        let n = carol_flags.iter().filter(|(k, l)| k == want.0 && l == want.1).count();
        assert_eq!(n, 1, "{want:?} in {carol_flags:?}");
    }
    assert_eq!(carol_flags.len(), 4, "{carol_flags:?}");
    assert_eq!(row("carol")["jobs"]["failed"], 1);
    // Dan trained 5 epochs a run where the assignment asks 50: every section says so.
    let dan_flags = kinds("dan");
    assert_eq!(dan_flags.len(), 8, "{dan_flags:?}");
    assert!(dan_flags.iter().all(|(k, _)| k == "few_epochs"), "{dan_flags:?}");
    // The class's numbers per run: the tutorial's finished by all four.
    let runs = class["runs"].as_array().unwrap();
    let t = runs.iter().find(|r| r["section"] == "tutorial").unwrap();
    assert_eq!((t["students"].as_u64(), t["final_test_acc"]["n"].as_u64()), (Some(4), Some(4)), "{t}");
    assert_eq!(t["final_test_acc"]["median"].as_f64(), Some(0.505));

    // The gradebook's CSV: a row per student, flags in words.
    let csv = ines.get(app.url(&format!("/class/{ASSIGNMENT}?format=csv"))).send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("student,sweep,submitted,jobs,succeeded"), "{}", lines[0]);
    assert!(lines[0].contains("tutorial: tutorial CNN final test acc %"), "{}", lines[0]);
    assert!(lines[1].starts_with(&format!("alice,{},", sweeps[0])), "{}", lines[1]);
    assert!(lines[3].starts_with("carol,") && lines[3].contains("lr 0.1 failed after 1 of 50 epochs"), "{}", lines[3]);

    // A student sees their own row and the class only as anonymous numbers.
    for (client, me, others) in
        [(&app.client, "alice", ["bob", "carol", "dan"]), (&app.bob, "bob", ["alice", "carol", "dan"])]
    {
        let body = client.get(app.url(&format!("/class/{ASSIGNMENT}"))).send().await.unwrap().text().await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> =
            v["students"].as_array().unwrap().iter().map(|r| r["student"].as_str().unwrap()).collect();
        assert_eq!(names, [me]);
        for o in others {
            assert!(!body.contains(o), "{me} sees {o}: {body}");
        }
        for s in &sweeps {
            assert!(
                s == v["students"][0]["sweep"].as_str().unwrap() || !body.contains(s.as_str()),
                "another's sweep id"
            );
        }
        let csv =
            client.get(app.url(&format!("/class/{ASSIGNMENT}?format=csv"))).send().await.unwrap().text().await.unwrap();
        assert_eq!(csv.lines().count(), 2, "{csv}");
        assert!(others.iter().all(|o| !csv.contains(o)), "{csv}");
    }
    // Alice's tutorial run has three others finished: she sees their quartiles (hers left
    // out, rounded to a point); bob's lr 0.1 has carol's failed run and two others: too few
    // to show him, though his own run stays in his CSV.
    let (_, mine) = status_of(app.client.get(app.url(&format!("/class/{ASSIGNMENT}")))).await;
    let runs = mine["runs"].as_array().unwrap();
    let t = runs.iter().find(|r| r["section"] == "tutorial").expect("the tutorial's quartiles");
    assert_eq!(
        (t["final_test_acc"]["n"].as_u64(), t["final_test_acc"]["median"].as_f64()),
        (Some(3), Some(0.51)),
        "{t}"
    );
    assert!(mine.get("report").is_none(), "the class report is not a student's");
    let (_, his) = status_of(app.bob.get(app.url(&format!("/class/{ASSIGNMENT}")))).await;
    assert!(!his["runs"].as_array().unwrap().iter().any(|r| r["label"] == "lr 0.1"), "{his}");
    let csv =
        app.bob.get(app.url(&format!("/class/{ASSIGNMENT}?format=csv"))).send().await.unwrap().text().await.unwrap();
    assert!(csv.lines().next().unwrap().contains("lr: lr 0.1 final test acc %"), "{csv}");
    // Carol reads her flags without the class's numbers.
    let (_, hers) = status_of(carol.get(app.url(&format!("/class/{ASSIGNMENT}")))).await;
    let messages: Vec<&str> =
        hers["students"][0]["flags"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert!(messages.contains(&"tutorial CNN ends at 20.0% test accuracy, far below the class's"), "{messages:?}");
    assert!(messages.contains(&"lr 0.01's loss stopped being finite"), "{messages:?}");

    // The figures: an instructor's with everyone, a student's own over the band; the
    // band behind a student's sweep changes its figure.
    for (client, student, query) in [
        (&ines, false, "section=lr&kind=curves&student=carol"),
        (&ines, false, "section=lr&kind=final"),
        (&app.client, true, "section=lr"),
    ] {
        let r = client.get(app.url(&format!("/class/{ASSIGNMENT}/plot?{query}&format=svg"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{query}");
        let svg = r.text().await.unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{query}");
        if query.contains("student=carol") {
            assert!(svg.contains("carol"), "the highlighted student is named");
        }
        if student {
            assert!(
                !svg.contains("carol") && !svg.contains("bob") && !svg.contains("dan"),
                "a student's figure names no one"
            );
        }
    }
    let plot = |class: bool| {
        let url = app.url(&format!("/sweeps/{}/plot?section=tutorial&format=svg&class={class}", sweeps[0]));
        let c = app.client.clone();
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let (plain, banded) = (plot(false).await, plot(true).await);
    assert_ne!(plain, banded, "the class's band is drawn behind alice's curves");
    assert!(banded.contains("class median"), "and named in the legend");
    let (s, e) = status_of(app.client.get(app.url(&format!("/class/{ASSIGNMENT}/plot?student=bob")))).await;
    assert_eq!(s, 403, "{e}");
    let (s, e) = status_of(ines.get(app.url("/class/homework-9"))).await;
    assert_eq!(s, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains("cifar10-assignment"), "{e}");

    // The class report, as HTML and as the Markdown zip.
    let html = ines.get(app.url(&format!("/class/{ASSIGNMENT}/report"))).send().await.unwrap().text().await.unwrap();
    for n in ["alice", "bob", "carol", "dan", "lr 0.1 failed after 1 of 50 epochs"] {
        assert!(html.contains(n), "{n} in the class report");
    }
    let zip = ines.get(app.url(&format!("/class/{ASSIGNMENT}/report?format=zip"))).send().await.unwrap();
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let bytes = zip.bytes().await.unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let files: Vec<String> = archive.file_names().map(|n| n.unwrap().to_string()).collect();
    assert!(
        files.iter().any(|f| f == "report.md") && files.iter().any(|f| f == "figures/tutorial-curves.png"),
        "{files:?}"
    );
}

#[tokio::test]
async fn migration_12_makes_admins_admins_and_finds_each_sweeps_preset_on_sqlite() {
    // A database as migration 11 left it: an admin, a student, a preset's sweep and a grid.
    let (_dir, pool, all) = sqlite_at_migration(11).await;
    for sql in [
        "INSERT INTO users (name, token_hash, is_admin, created_at) VALUES ('root', 'h1', 1, 1), ('ann', 'h2', 0, 1)",
        "INSERT INTO sweeps (id, owner_id, definition, created_at) VALUES \
         ('s1', 2, '{\"preset\": \"cifar10-assignment\", \"overrides\": {\"epochs\": 2}}', 1), \
         ('s2', 2, '{\"base\": {}, \"vary\": {\"lr\": [0.1]}}', 2), ('s3', 2, '{\"preset\": 7}', 3)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    all.run(&pool).await.unwrap();
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT name, role FROM users ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(roles, [("root".into(), "admin".into()), ("ann".into(), "student".into())]);
    let presets: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, preset FROM sweeps ORDER BY seq").fetch_all(&pool).await.unwrap();
    assert_eq!(presets, [("s1".into(), Some("cifar10-assignment".into())), ("s2".into(), None), ("s3".into(), None)]);
    assert!(
        sqlx::query("UPDATE users SET role = 'teacher' WHERE name = 'ann'").execute(&pool).await.is_err(),
        "a role is one of the three"
    );
}
