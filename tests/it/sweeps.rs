//! Sweeps and the assignment report.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn post_sweep(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.client.post(app.url("/sweeps")).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_preset_runs_twelve_jobs_and_reports_every_section() {
    let app = spawn_app(1).await;
    let tiny = json!({"epochs": 2, "train_limit": 40, "batch_size": 4});
    let (status, sweep) =
        post_sweep(&app, json!({"name": "assignment", "preset": "cifar10-assignment", "overrides": tiny})).await;
    assert_eq!(status, 201, "{sweep}");
    let id = sweep["id"].as_str().unwrap().to_string();
    let jobs = sweep["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 12, "sections naming the same experiment share a job");
    let ids: BTreeSet<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 12);
    let tutorial = jobs.iter().find(|j| j["point"] == json!({})).unwrap();
    // Each job is named by its first section's label.
    assert_eq!(tutorial["name"], "tutorial CNN");
    let names: BTreeSet<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert!(names.contains("batch 1000") && names.contains("lr 0.1"), "{names:?}");
    assert_eq!(names.len(), 12, "no two jobs share a name");
    assert_eq!(sweep["owner"], "alice");
    let sections: Vec<&str> =
        tutorial["sections"].as_array().unwrap().iter().map(|s| s["section"].as_str().unwrap()).collect();
    assert!(["tutorial", "cnn", "batch_size", "lr"].iter().all(|s| sections.contains(s)), "{sections:?}");
    let (_, list) = app.get("/jobs?limit=200").await;
    let seeds: BTreeSet<u64> =
        list["jobs"].as_array().unwrap().iter().map(|j| j["spec"]["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds.len(), 1, "one seed for the whole study");

    // The report reads while the sweep still runs.
    let early = app.client.get(app.url(&format!("/sweeps/{id}/report"))).send().await.unwrap();
    assert_eq!(early.status(), 200);

    for j in jobs {
        app.wait_for(j["id"].as_str().unwrap(), 180, |v| v["status"] == "succeeded").await;
    }
    // Now that jobs like these ran here, a check of the same study says how long it takes.
    let checked =
        app.client.post(app.url("/sweeps/check")).json(&json!({"preset": "cifar10-assignment", "overrides": tiny}));
    let (status, checked) = status_of(checked).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!((checked["jobs"].as_array().unwrap().len(), checked["without_estimate"].as_u64()), (12, Some(0)));
    let each: f64 = checked["jobs"].as_array().unwrap().iter().map(|j| j["estimated_seconds"].as_f64().unwrap()).sum();
    assert!(checked["estimated_seconds"].as_f64().unwrap() > 0.0 && each > 0.0, "{checked}");
    let r = app.client.get(app.url(&format!("/sweeps/{id}/report"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    for title in [
        "1. The tutorial&#39;s network as it is",
        "2. A single fully connected layer",
        "3. Three fully connected layers, with and without ReLU",
        "4. Two convolutional layers",
        "5. Batch size",
        "6. Learning rate",
        "7. Data augmentation on training only",
        "8. Mean squared error instead of cross-entropy",
    ] {
        let plain = title.replace("&#39;", "'");
        assert!(html.contains(title) || html.contains(&plain), "section {plain} missing");
    }
    assert_eq!(html.matches("<svg").count(), 8, "one figure (three panels) per section");
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    for n in ["62,006", "30,730", "379,774"] {
        assert!(html.contains(n), "parameter count {n}");
    }
    assert!(html.contains("lr 0.001 (tutorial)"), "the tutorial's rate beside the four rates");
    // The report interprets: the no-ReLU MLP against the linear model (one function class),
    // time per epoch, and a warning that two epochs on 40 images compare little.
    assert!(html.contains("Without an activation the three layers compose to a single linear map"), "mlp answer");
    assert!(html.contains("the linear model "), "both numbers");
    assert!(html.contains("optimiser steps"), "the batch sizes' cost per epoch");
    assert!(html.contains("This study is short (2 epochs on the first 40 training images)"), "the caveat");
    assert!(html.contains("<th>per epoch</th>") && html.contains("<th>wall time</th>"));
    assert!(html.contains("Best test accuracy:"), "a factual line per section");
    assert!(html.contains("12 jobs: 12 succeeded."), "{}", &html[..html.find("<section").unwrap_or(400).min(2000)]);

    let md =
        app.client.get(app.url(&format!("/sweeps/{id}/report?format=md"))).send().await.unwrap().text().await.unwrap();
    assert!(md.starts_with("# assignment"));
    assert!(md.contains(&format!("![test accuracy](/sweeps/{id}/plot?section=batch_size&metric=test_acc)")));
    // The zip: the same Markdown with its figures as files it links to, readable anywhere.
    let r = app.client.get(app.url(&format!("/sweeps/{id}/report?format=zip"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains(".zip"));
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip archive");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("report.md").unwrap(), &mut report).unwrap();
    assert!(report.starts_with("# assignment") && !report.contains("/sweeps/"), "no link needs the server");
    let linked: Vec<&str> =
        report.split("](").skip(1).filter_map(|l| l.split(')').next()).filter(|l| l.ends_with(".png")).collect();
    assert_eq!(linked.len(), 8, "a figure per section: {linked:?}");
    for path in linked {
        let mut png = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(path).unwrap_or_else(|_| panic!("{path} is in the zip")), &mut png)
            .unwrap();
        assert_eq!(&png[1..4], b"PNG", "{path}");
        let svg = path.replace(".png", ".svg");
        assert!(zip.by_name(&svg).is_ok(), "{svg} beside it");
    }
    let plot = app
        .client
        .get(app.url(&format!("/sweeps/{id}/plot?section=batch_size&metric=test_acc&format=svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(plot.status(), 200);
    let svg = plot.text().await.unwrap();
    for label in ["batch 1", "batch 4 (tutorial)", "batch 1000"] {
        assert!(svg.contains(&format!(">\n{label}\n<")), "legend {label}");
    }
    assert_eq!(app.client.get(app.url(&format!("/sweeps/{id}/plot?section=nope"))).send().await.unwrap().status(), 400);
    // A grid's one section, asked of the preset: a section this sweep lacks.
    let r = app.client.get(app.url(&format!("/sweeps/{id}/plot?section=all"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("its sections: tutorial"));

    // The command line saves the same report.
    let out = app.dir.path().join("report.html");
    let db = &app.db.url;
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_trainyard"))
        // A unique prefix of the id, as the page shows it, names the sweep.
        .args(["report", &id[..8], "--out", out.to_str().unwrap(), "--database", db])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let saved = std::fs::read_to_string(&out).unwrap();
    assert!(saved.contains("5. Batch size") && saved.matches("<svg").count() == 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_are_named_and_owned_and_admins_filter_them_by_owner() {
    let app = spawn_app(0).await;
    // Checked first: nothing like it ran on this box, so no time can be promised; nothing queued.
    let (status, checked) = status_of(
        app.client.post(app.url("/sweeps/check")).json(&json!({"preset": "optimizers", "overrides": {"epochs": 1}})),
    )
    .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(
        (checked["name"].as_str(), checked["accepted"].as_bool()),
        (Some("Optimisers on the tutorial CNN"), Some(true))
    );
    assert_eq!((checked["without_estimate"].as_u64(), checked["estimated_seconds"].is_null()), (Some(5), true));
    assert_eq!(checked["jobs"][4]["name"], "Adadelta + StepLR (MNIST example)");
    let (status, bad) = status_of(app.client.post(app.url("/sweeps/check")).json(&json!({"preset": "nope"}))).await;
    assert_eq!((status, bad["error"]["fields"][0]["field"].as_str()), (422, Some("preset")), "{bad}");
    let (_, none) = app.get("/sweeps").await;
    assert_eq!(none["sweeps"].as_array().unwrap().len(), 0, "a check queues nothing");
    let (_, preset) = post_sweep(&app, json!({"preset": "optimizers", "overrides": {"epochs": 1}})).await;
    assert_eq!(preset["name"], "Optimisers on the tutorial CNN", "a preset names its sweep");
    assert_eq!(preset["jobs"][0]["name"], "SGD (tutorial)", "and each job by its label");
    let (_, grid) = post_sweep(&app, json!({"base": {"epochs": 1}, "vary": {"batch_size": [1, 4], "lr": [0.1]}})).await;
    assert_eq!(grid["name"], "Grid over batch_size × lr");
    let r = app.bob.post(app.url("/sweeps")).json(&json!({"vary": {"lr": [0.1, 0.2]}, "base": {"epochs": 1}})).send();
    assert_eq!(r.await.unwrap().status(), 201);
    let (status, all) = status_of(app.admin.get(app.url("/sweeps"))).await;
    assert_eq!(status, 200);
    let owners: Vec<&str> = all["sweeps"].as_array().unwrap().iter().map(|s| s["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, ["bob", "alice", "alice"], "newest first, each with its owner");
    let (_, alices) = status_of(app.admin.get(app.url("/sweeps?owner=alice"))).await;
    assert_eq!(alices["sweeps"].as_array().unwrap().len(), 2, "{alices}");
    let (status, _) = status_of(app.client.get(app.url("/sweeps?owner=bob"))).await;
    assert_eq!(status, 403, "a student sees only their own");
    let (status, mine) = status_of(app.client.get(app.url("/sweeps?owner=alice"))).await;
    assert_eq!((status, mine["sweeps"].as_array().unwrap().len()), (200, 2));
    let (status, e) = status_of(app.admin.get(app.url("/sweeps?owner=nobody"))).await;
    assert_eq!(status, 404, "{e}");
    let (status, e) = status_of(app.admin.get(app.url("/sweeps?owner=%01"))).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("owner")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_expands_to_every_combination_and_is_validated_whole() {
    let app = spawn_app(0).await;
    let (status, sweep) =
        post_sweep(&app, json!({"base": {"epochs": 1}, "vary": {"batch_size": [1, 4, 1000], "lr": [0.1, 0.01]}})).await;
    assert_eq!(status, 201);
    let jobs = sweep["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 6);
    let points: BTreeSet<String> = jobs.iter().map(|j| j["point"].to_string()).collect();
    assert_eq!(points.len(), 6);
    let (_, list) = app.get("/jobs?limit=200").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 6);
    let seeds: BTreeSet<u64> =
        list["jobs"].as_array().unwrap().iter().map(|j| j["spec"]["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds.len(), 1, "a sweep's jobs share one seed");

    let (status, body) =
        post_sweep(&app, json!({"base": {"epochs": 0}, "vary": {"lr": [0.1, -1], "modle": ["cnn"]}})).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> =
        body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"base.epochs") && fields.contains(&"vary.lr (value -1)"), "{fields:?}");
    assert!(fields.iter().any(|f| f.starts_with("vary.modle")), "{fields:?}");
    let (status, _) = post_sweep(&app, json!({"preset": "cifar100"})).await;
    assert_eq!(status, 422);
    let (status, _) = post_sweep(&app, json!({"vary": {}})).await;
    assert_eq!(status, 422);
    // Nothing of the refused sweeps was queued.
    let (_, list) = app.get("/jobs?limit=200").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_sweep_cancels_its_unfinished_jobs_and_others_cannot_see_it() {
    let app = spawn_app(0).await;
    let (_, sweep) = post_sweep(&app, json!({"vary": {"lr": [0.1, 0.01, 0.001]}})).await;
    let id = sweep["id"].as_str().unwrap();
    assert_eq!(app.bob.get(app.url(&format!("/sweeps/{id}"))).send().await.unwrap().status(), 404);
    assert_eq!(app.bob.post(app.url(&format!("/sweeps/{id}/cancel"))).send().await.unwrap().status(), 404);
    let (_, bobs) = {
        let r = app.bob.get(app.url("/sweeps")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert!(bobs["sweeps"].as_array().unwrap().is_empty());
    let (_, mine) = app.get("/sweeps").await;
    assert_eq!(mine["sweeps"][0]["status_counts"], json!({"queued": 3}), "the list shows each sweep's progress");
    let r = app.client.post(app.url(&format!("/sweeps/{id}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert!(after["jobs"].as_array().unwrap().iter().all(|j| j["status"] == "cancelled"), "{after}");
    assert_eq!(after["status_counts"], json!({"cancelled": 3}));
    let (_, mine) = app.get("/sweeps").await;
    assert_eq!(mine["sweeps"].as_array().unwrap().len(), 1);
    assert_eq!(mine["sweeps"][0]["status_counts"], json!({"cancelled": 3}));
}
