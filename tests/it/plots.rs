//! Plots: what the pictures hold, and the routes around them.

use crate::helpers::*;
use serde_json::{json, Value};
use trainyard::job::EpochMetrics;
use trainyard::job::JobStatus;
use trainyard::plot::{self, Figure, Format, Metric, Series};
use trainyard::queue;

fn epoch(e: u32, loss: Option<f64>) -> EpochMetrics {
    EpochMetrics {
        epoch: e,
        train_loss: loss,
        train_acc: 0.1 + 0.05 * e as f64,
        test_loss: loss.map(|l| l * 1.1),
        test_acc: 0.1 + 0.04 * e as f64,
        seconds: 1.0,
        train_seconds: 0.9,
        samples_per_second: 100.0,
        diverged: loss.is_none(),
        lr: None,
    }
}

fn curve(n: u32) -> Vec<EpochMetrics> {
    (1..=n).map(|e| epoch(e, Some(2.3 / e as f64))).collect()
}

fn figure<'a>(series: Vec<Series<'a>>, metric: Metric) -> Figure<'a> {
    Figure {
        title: "t".into(),
        subtitle: "s".into(),
        series,
        metric,
        epochs_total: 10,
        empty_note: "no epoch finished yet (queued)".into(),
        width: 1000,
        height: 700,
        y_axis: Default::default(),
    }
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The polylines of one colour, each as its number of points, leaving out the legend's
/// samples (horizontal two-point strokes).
fn polylines(svg: &str, colour: &str) -> Vec<usize> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(colour))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse::<i32>().unwrap(), y.parse::<i32>().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .filter(|pts| !(pts.len() == 2 && pts[0].1 == pts[1].1))
        .map(|pts| pts.len())
        .collect()
}

#[test]
fn a_png_has_the_requested_size_and_the_series_colours_inside_the_plot_area() {
    let epochs = curve(10);
    let mut fig = figure(vec![Series::plain("a", &epochs)], Metric::All);
    fig.width = 1200;
    fig.height = 800;
    fig.title = "A title long enough to leave ink".into();
    let png = plot::render(&fig, Format::Png).unwrap();
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1200, 800));
    let count = |c: plotters::style::RGBColor, top: u32, bottom: u32| {
        img.enumerate_pixels().filter(|(_, y, p)| (top..bottom).contains(y) && p.0 == [c.0, c.1, c.2]).count()
    };
    // Train loss (first colour) and test loss (second) in the upper panel, accuracies below.
    assert!(count(plot::colour(0), 80, 400) > 500, "train loss line");
    assert!(count(plot::colour(1), 80, 400) > 500, "test loss line");
    assert!(count(plot::colour(0), 420, 800) > 500, "accuracy lines");
    // Text was drawn with the shipped font: dark pixels in the title band.
    assert!(img.enumerate_pixels().filter(|(_, y, p)| *y < 60 && p.0[0] < 80).count() > 100);
}

#[test]
fn an_svg_holds_one_line_per_series_with_one_point_per_epoch() {
    let epochs = curve(7);
    let svg = plot::render(&figure(vec![Series::plain("a", &epochs)], Metric::All), Format::Svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    // Train loss, train accuracy, test accuracy in the first colour; test loss in the second.
    assert_eq!(polylines(&svg, &hex(plot::colour(0))), [7, 7, 7]);
    assert_eq!(polylines(&svg, &hex(plot::colour(1))), [7]);
    for text in ["loss", "training accuracy", "test accuracy", "epoch", "accuracy (%)", "train loss", "test loss"] {
        assert!(svg.contains(&format!(">\n{text}\n<")), "{text} missing");
    }
    let single = plot::render(&figure(vec![Series::plain("a", &epochs)], Metric::TestAcc), Format::Svg).unwrap();
    assert_eq!(polylines(&String::from_utf8(single).unwrap(), &hex(plot::colour(0))), [7]);
}

#[test]
fn the_rate_figure_draws_each_jobs_schedule_with_readable_ticks() {
    let step: Vec<EpochMetrics> = (1..=6)
        .map(|e| EpochMetrics { lr: Some(1e-3 * 0.5f64.powi((e as i32 - 1) / 2)), ..epoch(e, Some(1.0)) })
        .collect();
    let flat: Vec<EpochMetrics> = (1..=6).map(|e| EpochMetrics { lr: Some(5e-4), ..epoch(e, Some(1.0)) }).collect();
    let old = curve(6); // rows recorded before rates were: nothing to draw
    let series = vec![Series::plain("step", &step), Series::plain("flat", &flat), Series::plain("old", &old)];
    let svg = String::from_utf8(plot::render(&figure(series, Metric::Lr), Format::Svg).unwrap()).unwrap();
    assert_eq!(polylines(&svg, &hex(plot::colour(0))), [6]);
    assert_eq!(polylines(&svg, &hex(plot::colour(1))), [6]);
    assert!(polylines(&svg, &hex(plot::colour(2))).is_empty());
    for text in ["learning rate", "step", "flat", "1.0e-3", "0"] {
        assert!(svg.contains(&format!(">\n{text}\n<")), "{text} missing");
    }
}

#[test]
fn a_diverged_run_leaves_a_marked_gap_and_keeps_the_axis_readable() {
    let mut epochs = curve(8);
    epochs[0].train_loss = Some(6e29); // one huge finite value
    epochs[3] = epoch(4, None);
    epochs[4] = epoch(5, None);
    let svg = plot::render(&figure(vec![Series::plain("a", &epochs)], Metric::Loss), Format::Svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    // The train loss line breaks at epochs 4–5: epochs 1–3 and 6–8.
    assert_eq!(polylines(&svg, &hex(plot::colour(0))), [3, 3]);
    assert!(svg.contains("not finite (diverged)"));
    assert!(svg.contains("(off scale)"), "the huge value is marked off scale");
    // The axis tops out near the bulk of the values, not at 6e29.
    let doc = roxmltree::Document::parse(&svg).unwrap();
    // (y labels carry two decimals; x labels are whole epochs)
    let labels: Vec<f64> = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text().map(str::trim).filter(|t| t.contains('.'))?.parse().ok())
        .collect();
    let top = labels.iter().copied().fold(0.0, f64::max);
    assert!(labels.len() >= 4 && top > 2.0 && top < 10.0, "y axis labels {labels:?}");
}

#[test]
fn single_epochs_are_dots_the_legend_explains_train_filled_and_test_open() {
    let one = curve(1);
    let two = [epoch(1, Some(2.0))];
    let svg =
        plot::render(&figure(vec![Series::plain("a", &one), Series::plain("b", &two)], Metric::Loss), Format::Svg)
            .unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(
        svg.contains("train loss: filled dot") && svg.contains("test loss: open dot"),
        "the legend says what the dots are"
    );
    assert!(!svg.contains("dashed"), "no line style is named when there is no line");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let circles: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("circle")).collect();
    let open = circles.iter().filter(|n| n.attribute("fill") == Some("none")).count();
    let filled = circles.len() - open;
    // Each job: a filled train dot and an open test dot; the legend: a filled dot per job,
    // and a filled and an open one for the styles.
    assert_eq!((filled, open), (5, 3), "{} circles", circles.len());
    // Longer runs keep their lines and the line legend.
    let long = curve(5);
    let svg =
        plot::render(&figure(vec![Series::plain("a", &long), Series::plain("b", &one)], Metric::Loss), Format::Svg)
            .unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("train loss: solid line or filled dot") && svg.contains("test loss: dashed line or open dot"));
}

#[test]
fn an_empty_figure_says_so_instead_of_failing() {
    let svg = plot::render(&figure(vec![Series::plain("a", &[])], Metric::All), Format::Svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("no epoch finished yet (queued)"));
    assert!(plot::render(&figure(vec![Series::plain("a", &[])], Metric::Loss), Format::Png).is_ok());
}

#[test]
fn a_comparison_names_jobs_by_what_differs_or_by_name() {
    let a = json!({"model": "cnn", "batch_size": 1, "lr": 0.001, "seed": 1});
    let b = json!({"model": "cnn", "batch_size": 4, "lr": 0.001, "seed": 2});
    let c = plot::compare(&[(None, a.clone()), (None, b.clone())]);
    assert_eq!(c.labels, ["batch_size=1", "batch_size=4"]);
    assert_eq!(c.varying, ["batch_size"]);
    assert!(c.shared.contains("lr=0.001") && c.shared.starts_with("cnn"), "{}", c.shared);
    // Names only when every job has one: a legend never mixes the two styles.
    let c = plot::compare(&[(Some("mine".into()), a.clone()), (None, b.clone())]);
    assert_eq!(c.labels, ["batch_size=1", "batch_size=4"]);
    let c = plot::compare(&[(Some("mine".into()), a.clone()), (Some("theirs".into()), b)]);
    assert_eq!(c.labels, ["mine", "theirs"]);
    let twin = json!({"model": "cnn", "batch_size": 1, "lr": 0.001, "seed": 9});
    let c = plot::compare(&[(None, a.clone()), (None, twin)]);
    assert_eq!(c.labels, ["seed=1", "seed=9"], "identical settings fall back to the seed");
}

/// Makes a job with `n` finished epochs without training: claim it, record, finish.
async fn job_with_epochs(app: &TestApp, spec: Value, epochs: &[EpochMetrics], finish: bool) -> String {
    let id = app.submit(spec).await;
    let pool = &app.server.pool;
    let claimed = queue::claim_next_job(pool, "test", "cpu", queue::now_ms(), 60_000, 0).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    for m in epochs {
        assert!(queue::Lease::new(id.as_str(), claimed.attempt)
            .record_epoch(pool, m.epoch.into(), m, queue::now_ms(), 60_000)
            .await
            .unwrap());
    }
    if finish {
        queue::Lease::new(id.as_str(), claimed.attempt)
            .finish(pool, JobStatus::Succeeded, None, queue::now_ms())
            .await
            .unwrap();
    }
    id
}

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_plot_is_served_as_png_or_svg_with_its_title_and_epochs_so_far() {
    let app = spawn_app(0).await;
    let id = job_with_epochs(&app, json!({"name": "half", "epochs": 10, "batch_size": 4}), &curve(4), false).await;
    let r = fetch(&app, &format!("/jobs/{id}/plot")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1000, 700));

    let r = fetch(&app, &format!("/jobs/{id}/plot?format=svg&metric=loss&width=800&height=500")).await;
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    assert!(svg.starts_with("<svg width=\"800\" height=\"500\""));
    assert!(svg.contains("half — running (4 of 10 epochs)"), "the title names the job and its progress");
    assert!(svg.contains("batch_size=4"), "the settings line");
    assert_eq!(polylines(&svg, &hex(plot::colour(0))), [4], "a running job shows the epochs so far");

    let queued = app.submit(json!({"epochs": 3})).await;
    let svg = fetch(&app, &format!("/jobs/{queued}/plot?format=svg")).await.text().await.unwrap();
    assert!(svg.contains("no epoch finished yet (queued)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_jobs_compare_on_one_chart_each_in_its_colour_and_named_by_what_differs() {
    let app = spawn_app(0).await;
    let mut ids = Vec::new();
    for b in 1..=10 {
        ids.push(job_with_epochs(&app, json!({"batch_size": b, "epochs": 5, "seed": 1}), &curve(5), true).await);
    }
    let r = fetch(&app, &format!("/plot?jobs={}&format=svg&metric=train_acc", ids.join(","))).await;
    assert_eq!(r.status(), 200);
    let svg = r.text().await.unwrap();
    for i in 0..10 {
        assert_eq!(polylines(&svg, &hex(plot::colour(i))), [5], "job {i}'s line");
        assert!(svg.contains(&format!(">\nbatch_size={}\n<", i + 1)), "legend for batch_size={}", i + 1);
    }
    assert!(svg.contains("10 jobs: batch_size"));
    let r = fetch(&app, &format!("/plot?jobs={}", ids.join(","))).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(image::load_from_memory(&r.bytes().await.unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_says_the_labels_title_and_shared_settings_the_figure_draws() {
    let app = spawn_app(0).await;
    // An mlp beside a cnn: `hidden` applies to one of them only.
    let mlp = job_with_epochs(&app, json!({"model": "mlp", "epochs": 2, "seed": 1}), &curve(2), true).await;
    let cnn = job_with_epochs(&app, json!({"model": "cnn", "epochs": 2, "seed": 1}), &curve(2), true).await;
    let (status, c) = app.get(&format!("/compare?jobs={mlp},{cnn}")).await;
    assert_eq!(status, 200, "{c}");
    let labels: Vec<&str> = c["jobs"].as_array().unwrap().iter().map(|j| j["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["mlp, hidden=120+84", "cnn"], "{c}");
    assert_eq!(c["jobs"][0]["id"], mlp);
    let svg = fetch(&app, &format!("/plot?jobs={mlp},{cnn}&format=svg&metric=loss")).await.text().await.unwrap();
    for label in labels {
        assert!(svg.contains(&format!(">\n{label}\n<")), "the figure's legend holds {label}");
    }
    assert!(svg.contains(c["title"].as_str().unwrap()), "{c}");
    assert!(svg.contains(c["shared"].as_str().unwrap()), "{c}");
    // The same limits as /plot.
    let (status, e) = app.get("/compare?jobs=").await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("jobs")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plot_requests_get_404_or_400_naming_what_is_allowed() {
    let app = spawn_app(0).await;
    let id = app.submit(json!({})).await;
    let check = |path: String, status: u16, needle: &'static str| {
        let app = &app;
        async move {
            let r = fetch(app, &path).await;
            assert_eq!(r.status(), status, "{path}");
            let body: Value = r.json().await.unwrap();
            let msg = body["error"]["message"].as_str().unwrap().to_string();
            assert!(msg.contains(needle), "{path}: {msg}");
        }
    };
    check("/jobs/00000000-0000-0000-0000-000000000000/plot".into(), 404, "no job").await;
    check(format!("/plot?jobs={id},00000000-0000-0000-0000-000000000000"), 404, "no job").await;
    check(format!("/jobs/{id}/plot?metric=accuracy"), 400, "loss, train_acc, test_acc, lr, all").await;
    check(format!("/jobs/{id}/plot?format=jpg"), 400, "png, svg").await;
    check(format!("/jobs/{id}/plot?width=10"), 400, "from 300 to 2000").await;
    check("/plot".into(), 400, "1 to 20 job ids").await;
    let many: Vec<String> = (0..21).map(|i| format!("00000000-0000-0000-0000-{i:012}")).collect();
    check(format!("/plot?jobs={}", many.join(",")), 400, "1 to 20 job ids").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_client_gets_304_until_the_plot_changes() {
    let app = spawn_app(0).await;
    let id = app.submit(json!({"epochs": 3})).await;
    let path = format!("/jobs/{id}/plot?format=svg");
    let first = fetch(&app, &path).await;
    let tag = first.headers()["etag"].to_str().unwrap().to_string();
    let again = app.client.get(app.url(&path)).header("If-None-Match", &tag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);
    // Another format is another picture.
    let png = app.client.get(app.url(&format!("/jobs/{id}/plot"))).header("If-None-Match", &tag).send().await.unwrap();
    assert_eq!(png.status(), 200);
    // A new epoch changes it.
    let claimed =
        queue::claim_next_job(&app.server.pool, "t", "cpu", queue::now_ms(), 60_000, 0).await.unwrap().unwrap();
    queue::Lease::new(id.as_str(), claimed.attempt)
        .record_epoch(&app.server.pool, 1, &curve(1)[0], queue::now_ms(), 60_000)
        .await
        .unwrap();
    let changed = app.client.get(app.url(&path)).header("If-None-Match", &tag).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plots_take_y_fit_or_full_and_nothing_else() {
    let app = crate::helpers::spawn_app(1).await;
    let id = app.submit(serde_json::json!({"model": "linear", "epochs": 2})).await;
    app.wait_for(&id, 60, crate::helpers::status_is("succeeded")).await;
    let get = |q: &str| app.client.get(app.url(&format!("/jobs/{id}/plot?format=svg&metric=test_acc{q}"))).send();
    let fit = get("").await.unwrap().text().await.unwrap();
    let full = get("&y=full").await.unwrap().text().await.unwrap();
    // Full runs the accuracy axis from 0 to 100; fitted, the labels hug the values, and an
    // axis label of 0 appears only on the full figure.
    assert!(full.contains(">\n0\n<") && full.contains(">\n100\n<"), "full axis labels");
    assert_ne!(fit, full);
    let r = get("&y=tight").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["field"], "y");
}

/// Twelve specs like a class's comparison: the tutorial's CNN with one setting changed each.
fn twelve_specs() -> Vec<(Option<String>, Value)> {
    let base = json!({"model": "cnn", "activation": "relu", "batch_size": 4, "lr": 0.001, "momentum": 0.9,
                      "loss": "cross_entropy", "augment": [], "seed": 1, "epochs": 5});
    let changes = [
        json!({}),
        json!({"batch_size": 1}),
        json!({"batch_size": 1000}),
        json!({"lr": 10.0}),
        json!({"lr": 0.1}),
        json!({"lr": 0.01}),
        json!({"lr": 0.0001}),
        json!({"augment": ["random_resized_crop", "horizontal_flip"]}),
        json!({"loss": "mse"}),
        json!({"model": "mlp"}),
        json!({"model": "linear"}),
        json!({"seed": 2}),
    ];
    changes
        .iter()
        .map(|c| {
            let mut s = base.clone();
            for (k, v) in c.as_object().unwrap() {
                s[k] = v.clone();
            }
            (None, s)
        })
        .collect()
}

#[test]
fn a_comparison_of_twelve_says_only_what_sets_each_job_apart() {
    let c = plot::compare(&twelve_specs());
    assert_eq!(c.labels[0], "cnn, seed=1", "the baseline says its model, and its seed beside its twin's");
    assert_eq!(c.labels[1], "cnn, batch_size=1");
    assert_eq!(c.labels[3], "cnn, lr=10");
    assert_eq!(c.labels[10], "linear");
    assert_eq!(c.labels[11], "cnn, seed=2");
    let distinct: std::collections::BTreeSet<&String> = c.labels.iter().collect();
    assert_eq!(distinct.len(), 12, "{:?}", c.labels);
    assert!(c.labels.iter().all(|l| l.chars().count() <= 40), "short: {:?}", c.labels);
    assert!(c.shared.contains("baseline: batch_size=4 · lr=0.001"), "the subtitle names the baseline: {}", c.shared);
}

#[test]
fn the_legend_of_twelve_jobs_stands_beside_the_panels_and_every_curve_shows_in_its_own_style() {
    let specs = twelve_specs();
    let labels = plot::compare(&specs).labels;
    // The top curves are the interesting ones: the legend used to cover them.
    let runs: Vec<Vec<EpochMetrics>> = (0..12)
        .map(|i| {
            (1..=5)
                .map(|e| EpochMetrics { test_acc: 0.5 + 0.03 * i as f64 + 0.01 * e as f64, ..epoch(e, Some(1.5)) })
                .collect()
        })
        .collect();
    let series: Vec<Series> =
        runs.iter().zip(&labels).zip(&specs).map(|((r, l), (_, s))| Series::of_spec(l.clone(), r, s)).collect();
    let mut fig = figure(series, Metric::TestAcc);
    fig.epochs_total = 5;
    let lay = plot::layout(&fig);
    let legend = lay.legend.expect("a comparison has a legend");
    for p in &lay.panels {
        assert!(!legend.overlaps(&p.area), "the legend {legend:?} overlaps the panel {p:?}");
    }
    assert!(legend.x as u32 + legend.w <= fig.width, "inside the figure");
    let png = plot::render(&fig, Format::Png).unwrap();
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
    let panel = lay.panels[0].area;
    for i in 0..12 {
        let c = plot::colour(i);
        let inside = img
            .enumerate_pixels()
            .filter(|(x, y, p)| {
                (panel.x as u32..panel.x as u32 + panel.w).contains(x)
                    && (panel.y as u32..panel.y as u32 + panel.h).contains(y)
                    && p.0 == [c.0, c.1, c.2]
            })
            .count();
        assert!(inside > 300, "job {i}'s curve shows in the panel ({inside} pixels)");
    }
    // Past ten, the lighter colours are told apart by their markers too: squares.
    let svg = String::from_utf8(plot::render(&fig, Format::Svg).unwrap()).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let squares = |i: usize| {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(&hex(plot::colour(i))))
            .count()
    };
    assert_eq!((squares(9), squares(10), squares(11)), (0, 6, 6), "5 points and a legend sample each");
    for l in &labels {
        assert!(svg.contains(&format!(">\n{l}\n<")), "the legend names {l}");
    }
}

#[test]
fn different_losses_get_panels_of_their_own_and_chance_is_marked() {
    let ce: Vec<EpochMetrics> = (1..=4).map(|e| epoch(e, Some(2.3 - 0.2 * e as f64))).collect();
    let mse: Vec<EpochMetrics> = (1..=4).map(|e| epoch(e, Some(0.09 - 0.005 * e as f64))).collect();
    let ce_spec = json!({"loss": "cross_entropy", "dataset": "cifar10"});
    let mse_spec = json!({"loss": "mse", "dataset": "cifar10"});
    let mut fig = figure(
        vec![Series::of_spec("cross-entropy".into(), &ce, &ce_spec), Series::of_spec("MSE".into(), &mse, &mse_spec)],
        Metric::All,
    );
    fig.y_axis = plot::YAxis::Full;
    let lay = plot::layout(&fig);
    let captions: Vec<&str> = lay.panels.iter().map(|p| p.caption.as_str()).collect();
    assert_eq!(captions, ["cross-entropy loss", "MSE loss", "training accuracy", "test accuracy"]);
    let svg = String::from_utf8(plot::render(&fig, Format::Svg).unwrap()).unwrap();
    // Each loss panel draws its own job's train line: MSE is not flattened against 2.3.
    assert_eq!(
        polylines(&svg, &hex(plot::colour(1))).iter().filter(|n| **n == 4).count(),
        3,
        "MSE train, train acc, test acc"
    );
    assert!(svg.contains("chance (10 %)"), "chance level is marked on full accuracy axes");
}

#[test]
fn a_loss_that_was_never_finite_says_so_in_its_empty_panel() {
    let epochs: Vec<EpochMetrics> = (1..=3).map(|e| EpochMetrics { test_acc: 0.1, ..epoch(e, None) }).collect();
    let spec = json!({"loss": "cross_entropy", "dataset": "cifar10"});
    let fig = figure(vec![Series::of_spec("lr 10".into(), &epochs, &spec)], Metric::All);
    let svg = String::from_utf8(plot::render(&fig, Format::Svg).unwrap()).unwrap();
    assert!(svg.contains("loss was not finite from epoch 1"), "the empty loss chart says why");
    assert!(svg.contains("not finite (diverged)"));
    assert!(svg.contains("chance (10 %)"), "a run at chance sits on the marked line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_job_says_so_in_its_json_the_list_and_its_figure() {
    let app = spawn_app(0).await;
    let mut epochs = curve(3);
    epochs[1] = epoch(2, None);
    epochs[2] = epoch(3, None);
    let id = job_with_epochs(&app, json!({"name": "hot", "epochs": 3, "lr": 10.0}), &epochs, true).await;
    let job = app.job(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["diverged"].as_bool(), job["diverged_at"].as_u64()),
        (Some("succeeded"), Some(true), Some(2))
    );
    let (_, list) = app.get("/jobs").await;
    assert_eq!(list["jobs"][0]["diverged"], true);
    let svg = fetch(&app, &format!("/jobs/{id}/plot?format=svg")).await.text().await.unwrap();
    assert!(svg.contains("hot — succeeded, diverged at epoch 2 (3 of 3 epochs)"), "the figure's title");
    let calm = job_with_epochs(&app, json!({"epochs": 1}), &curve(1), true).await;
    assert_eq!(app.job(&calm).await["diverged"], false);
}
