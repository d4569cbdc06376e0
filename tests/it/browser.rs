//! The web page in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini), against a real server with a worker. make test installs
//! both (`chromium`, `chromium-driver`). Screenshots land in target/screenshots/.

use crate::helpers::*;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver (killed on drop) and a session of a fresh headless Chromium.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's chromium and chromium-driver (make test installs them)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // N.B.: the WebDriver client's rustls needs its crypto named (the tree has two).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ]}});
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls().unwrap().capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from {CHROMEDRIVER}: {e}"),
            }
        };
        Browser { client, driver, _profile: profile }
    }

    /// Evaluates `expr` in the page until it is truthy; returns its value.
    async fn until(&self, what: &str, expr: &str, secs: u64) -> Value {
        match self.poll(expr, secs).await {
            Ok(v) => v,
            Err(last) => {
                let text = self.text("body").await;
                panic!("timed out waiting for {what} ({expr}); last value {last}; the page says:\n{text}");
            }
        }
    }

    /// As `until`, but null when `expr` is still falsy after `secs`.
    async fn until_or_null(&self, expr: &str, secs: u64) -> Value {
        self.poll(expr, secs).await.unwrap_or(Value::Null)
    }

    /// `expr`'s first truthy value within `secs`, or its last value (or error).
    async fn poll(&self, expr: &str, secs: u64) -> Result<Value, Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.client.execute(&format!("return ({expr});"), vec![]).await {
                Ok(v) if !v.is_null() && v != json!(false) && v != json!(0) && v != json!("") => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = json!(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// The rendered text of the first element `css` finds ("" when none), read in one step in
    /// the page: a live view that redraws the element between a find and a read leaves no
    /// stale reference behind.
    async fn text(&self, css: &str) -> String {
        let read = format!("return document.querySelector({css:?})?.innerText ?? '';");
        match self.client.execute(&read, vec![]).await {
            Ok(Value::String(t)) => t,
            _ => String::new(),
        }
    }

    /// Clicks the first element `css` finds; found again when the page redrew it between the
    /// find and the click (a live list does, as events arrive).
    async fn click(&self, css: &str) {
        for attempt in 0.. {
            let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
            match e.click().await {
                Ok(_) => return,
                Err(fantoccini::error::CmdError::Standard(w))
                    if w.error == fantoccini::error::ErrorStatus::StaleElementReference && attempt < 5 => {}
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.client.goto(&format!("{base}/")).await.unwrap();
        self.until("the sign-in form", "document.querySelector('#token')", 20).await;
        self.type_into("#token", token).await;
        self.click("#sign-in button[type=submit]").await;
        self.until("the signed-in page", "!document.querySelector('#who').hidden", 20).await;
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// True once a sweep page's figure has loaded.
const SWEEP_FIGURE_LOADED: &str =
    "document.querySelector('#sweep-figure') && document.querySelector('#sweep-figure').naturalWidth > 0";

fn count(css: &str) -> String {
    format!("document.querySelectorAll({css:?}).length")
}

#[tokio::test]
async fn a_student_signs_in_submits_watches_epochs_arrive_and_cancels_in_a_real_browser() {
    let app = spawn_app(1).await;
    let now = trainyard::queue::now_ms();
    let (_, carol) =
        trainyard::queue::users::add_user(&app.server.pool, "carol", trainyard::queue::users::Role::Student, now)
            .await
            .unwrap();
    // Bob's job must never show on Carol's page.
    let bob_job = {
        let r =
            app.bob.post(app.url("/jobs")).json(&json!({"name": "bobs-secret-run", "epochs": 1})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    };
    let b = Browser::start(1280, 1000).await;

    // A wrong token is refused beside the field; the right one signs in.
    b.client.goto(&app.url("/")).await.unwrap();
    b.until("the sign-in form", "document.querySelector('#token')", 20).await;
    b.type_into("#token", "ty_not-a-token").await;
    b.click("#sign-in button[type=submit]").await;
    let err = b.until("the token error", "document.querySelector('#token-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("not valid"), "{err}");
    b.sign_in(&app.base, &carol).await;
    assert_eq!(b.text("#who-name").await, "carol");
    // A reload of the page would lose this; the checks below show it never happens.
    b.client.execute("window.__stayed = 'yes'; return 1;", vec![]).await.unwrap();

    // The submit form: two bad fields, each error shown beside its field, nothing queued.
    b.click("a[data-nav=submit]").await;
    b.until("the form", "document.querySelector('#f-lr')", 20).await;
    let help = b.text("[data-field=batch_size] .help").await;
    assert!(help.contains("From 1 to 50000.") && help.contains("Default: 4."), "{help}");
    // A decimal comma reaches the server as typed (not as another number) and is refused there.
    b.type_into("#f-lr", "0,01").await;
    b.click("#submit-job").await;
    let unread = b.until("lr's error", "document.querySelector('#f-lr-error').textContent", 10).await;
    assert!(unread.as_str().unwrap().contains("got \"0,01\""), "{unread}");
    b.type_into("#f-lr", "-1").await;
    b.type_into("#f-epochs", "5000").await;
    b.click("#submit-job").await;
    let lr_error = b.until("lr's error", "document.querySelector('#f-lr-error').textContent", 10).await;
    assert!(lr_error.as_str().unwrap().contains("> 0"), "{lr_error}");
    let epochs_error = b.text("#f-epochs-error").await;
    assert!(epochs_error.contains("1000"), "the server's limit is named: {epochs_error}");
    assert_eq!(
        b.client.execute("return document.querySelector('#f-lr').getAttribute('aria-invalid')", vec![]).await.unwrap(),
        json!("true")
    );
    assert_eq!(b.text("#f-momentum-error").await, "", "a good field shows no error");
    b.screenshot("submit-errors.png").await;
    assert_eq!(trainyard_jobs(&app, &carol).await, 0, "nothing was queued");

    // Fixed, it is queued and the page goes to the job, which fills in live.
    b.type_into("#f-lr", "0.01").await;
    b.type_into("#f-epochs", "300").await;
    b.type_into("#f-batch_size", "1").await;
    // A name is text wherever it shows, never markup.
    b.type_into("#f-name", "<b>browser</b>-cnn").await;
    b.click("#submit-job").await;
    let url = b.until("the job's page", "location.hash.startsWith('#/job/') && location.hash", 20).await;
    let id = url.as_str().unwrap().trim_start_matches("#/job/").to_string();
    let first = b
        .until("a first epoch row", &format!("{} >= 1 && {}", count("#epochs tbody tr"), count("#epochs tbody tr")), 60)
        .await;
    let later = b
        .until(
            "more epochs arriving without a reload",
            &format!("{} > {} && {}", count("#epochs tbody tr"), first, count("#epochs tbody tr")),
            60,
        )
        .await;
    assert!(later.as_i64().unwrap() > first.as_i64().unwrap());
    assert_eq!(
        b.client.execute("return window.__stayed", vec![]).await.unwrap(),
        json!("yes"),
        "the page was never reloaded"
    );
    // The charts drew the epochs (uPlot's canvas), and the status says running.
    b.until("three charts", "document.querySelectorAll('#charts .uplot canvas').length === 3", 10).await;
    // N.B.: the page reads the job again when its stream says it started: that may land
    // after the first epochs under load.
    b.until("the status to say running", "document.querySelector('h1 .status')?.textContent === 'running'", 20).await;
    b.until(
        "the progress bar",
        "document.querySelector('#epoch-bar') || document.querySelector('#job-progress p')",
        10,
    )
    .await;
    b.screenshot("job-live.png").await;

    // The reader zooms into the loss chart (a drag) and hides its test line (a legend click);
    // more epochs land, and both stay as the reader left them.
    let loss = "trainyard.charts()[0]";
    b.until("three epochs", &format!("{loss}.data[0].length >= 3"), 60).await;
    b.click("#charts .chart:first-child .u-legend .u-series:nth-child(3) th").await;
    assert_eq!(b.client.execute(&format!("return {loss}.series[2].show"), vec![]).await.unwrap(), json!(false));
    // The drag: across half the plot, from near its left edge. The chart is scrolled into
    // view first (a pointer outside the viewport is an error), and the x range is read once
    // the drag has set it, unzoomed being the first epoch to the last.
    b.client.execute(&format!("{loss}.over.scrollIntoView({{block: 'center'}}); return 1;"), vec![]).await.unwrap();
    let over = b.client.find(Locator::Css("#charts .chart:first-child .u-over")).await.unwrap();
    let width = b.client.execute(&format!("return {loss}.over.clientWidth"), vec![]).await.unwrap().as_f64().unwrap();
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement { element: over, duration: None, x: -width * 0.45, y: 0.0 })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(200)), x: width * 0.5, y: 0.0 })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    b.client.perform_actions(drag).await.unwrap();
    let zoom = b
        .until(
            "the drag to zoom in",
            &format!(
                "{loss}.scales.x.max - {loss}.scales.x.min < {loss}.data[0].length - 1 && \
                 [{loss}.scales.x.min, {loss}.scales.x.max, {loss}.data[0].length]"
            ),
            10,
        )
        .await;
    let (lo, hi, n) = (zoom[0].as_f64().unwrap(), zoom[1].as_f64().unwrap(), zoom[2].as_i64().unwrap());
    b.until("two more epochs", &format!("{loss}.data[0].length >= {}", n + 2), 60).await;
    let after = b
        .client
        .execute(&format!("return [{loss}.scales.x.min, {loss}.scales.x.max, {loss}.series[2].show]"), vec![])
        .await
        .unwrap();
    assert_eq!(after, json!([lo, hi, false]), "the zoom and the hidden line survive new epochs");

    // "Submit a variant" starts the form from this job's settings.
    b.click("#resubmit").await;
    let lr = b
        .until(
            "the form filled from the job",
            "document.querySelector('#f-lr') && document.querySelector('#f-lr').value",
            20,
        )
        .await;
    assert_eq!(lr, json!("0.01"));
    let filled = b
        .client
        .execute("return [document.querySelector('#f-batch_size').value, document.querySelector('#f-seed').value, document.querySelector('#f-name').value]", vec![])
        .await
        .unwrap();
    assert_eq!(filled, json!(["1", "", "<b>browser</b>-cnn (variant)"]), "its settings, a fresh seed");

    // My jobs: mine with its status and accuracy, Bob's absent.
    b.click("a[data-nav=jobs]").await;
    b.until("my job in the list", &format!("document.querySelector('tr[data-job=\"{id}\"]')"), 20).await;
    let page = b.text("#jobs").await;
    assert!(page.contains("<b>browser</b>-cnn"), "the name as typed: {page}");
    assert_eq!(
        b.client.execute("return document.querySelectorAll('#jobs b, h1 b').length", vec![]).await.unwrap(),
        json!(0)
    );
    assert!(!page.contains("bobs-secret-run"), "another student's job is shown: {page}");
    assert_eq!(
        b.client
            .execute(&format!("return document.querySelector('tr[data-job=\"{bob_job}\"]')"), vec![])
            .await
            .unwrap(),
        Value::Null
    );
    let acc = b.text(&format!("tr[data-job=\"{id}\"] td.acc")).await;
    assert!(acc.ends_with('%'), "latest test accuracy shown: {acc:?}");
    b.screenshot("jobs.png").await;

    // Cancel from the list; the row turns cancelled live, and the server agrees.
    b.click(&format!("button[data-cancel=\"{id}\"]")).await;
    b.until(
        "the row to say cancelled",
        &format!("document.querySelector('tr[data-job=\"{id}\"]').dataset.status === 'cancelled'"),
        20,
    )
    .await;
    let body: Value = trainyard_job(&app, &carol, &id).await;
    assert_eq!(body["status"], "cancelled");

    // The same page on a phone: nothing wider than the screen but the tables' own scroll.
    b.client.set_window_size(390, 844).await.unwrap();
    b.client.goto(&app.url(&format!("/#/job/{id}"))).await.unwrap();
    b.until("the job on a phone", &format!("{} >= 2", count("#epochs tbody tr")), 20).await;
    // N.B.: read once the charts have taken the narrow width (a resize reaches them a frame later).
    let fits = "document.documentElement.scrollWidth - window.innerWidth";
    let settled = format!("{fits} <= 0 && [...document.querySelectorAll('#charts canvas')].every((c) => c.clientWidth <= window.innerWidth) && 'fits'");
    if b.until_or_null(&settled, 10).await.is_null() {
        let overflow = b.client.execute(&format!("return {fits}"), vec![]).await.unwrap();
        panic!("the page is wider than a phone by {overflow} px");
    }
    b.screenshot("job-phone.png").await;

    // Signing out forgets the token: the page asks again.
    b.click("#sign-out").await;
    b.until("the sign-in form", "document.querySelector('#token') && sessionStorage.length === 0", 10).await;
    b.close().await;
}

async fn trainyard_jobs(app: &TestApp, token: &str) -> usize {
    let r = client_for(token).get(app.url("/jobs")).send().await.unwrap();
    r.json::<Value>().await.unwrap()["jobs"].as_array().unwrap().len()
}

async fn trainyard_job(app: &TestApp, token: &str, id: &str) -> Value {
    let r = client_for(token).get(app.url(&format!("/jobs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_admin_sees_the_queue_and_workers_and_adds_a_user_whose_token_works() {
    let app = spawn_app(1).await;
    let admin = std::fs::read_to_string(app.dir.path().join("admin.token")).unwrap().trim().to_string();
    // One job of Alice's trains, one waits (batch sizes differ, so they cannot train as one
    // group): the queue shows both, with the owner.
    let mut jobs = Vec::new();
    for batch_size in [1, 2] {
        jobs.push(app.submit(json!({"epochs": 300, "batch_size": batch_size})).await);
    }
    let b = Browser::start(1280, 1000).await;
    b.sign_in(&app.base, &admin).await;
    b.click("#nav-admin").await;
    b.until("the workers table", "document.querySelector('#workers tbody tr')", 20).await;
    assert!(b.text("#workers").await.contains("cpu"), "{}", b.text("#workers").await);
    b.until("a busy worker", "document.querySelector('#workers').textContent.includes('busy')", 20).await;
    let queue = b
        .until("the queue", "document.querySelector('#queue') && document.querySelector('#queue tbody').innerText", 20)
        .await;
    let queue = queue.as_str().unwrap();
    assert_eq!(queue.matches("alice").count(), 2, "{queue}");
    assert!(queue.contains("running") && queue.contains("queued"), "{queue}");
    b.until("the users table", "document.querySelector('tr[data-user=\"alice\"]')", 20).await;
    b.type_into("#new-user", "Dave Smith").await;
    b.click("#add-user button[type=submit]").await;
    let err = b.until("the name's error", "document.querySelector('#new-user-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("a-z, 0-9"), "{err}");
    b.type_into("#new-user", "dave").await;
    b.click("#add-user button[type=submit]").await;
    let token = b
        .until(
            "dave's token",
            "document.querySelector('#new-token .token') && document.querySelector('#new-token .token').textContent",
            10,
        )
        .await;
    let token = token.as_str().unwrap().to_string();
    let r = client_for(&token).get(app.url("/me")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the token the page showed works");
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "dave");
    b.until("dave in the list", "document.querySelector('tr[data-user=\"dave\"]')", 10).await;
    assert_eq!(b.text("tr[data-user=\"dave\"] td.role").await, "student", "the default role");
    // An instructor, by the role select.
    b.type_into("#new-user", "erin").await;
    let pick = "const s = document.querySelector('#new-role'); s.value = 'instructor'; return 1;";
    b.client.execute(pick, vec![]).await.unwrap();
    b.click("#add-user button[type=submit]").await;
    b.until(
        "erin in the list",
        "document.querySelector('tr[data-user=\"erin\"] td.role')?.textContent === 'instructor'",
        10,
    )
    .await;
    let (_, users) = status_of(app.admin.get(app.url("/users"))).await;
    let erin = users["users"].as_array().unwrap().iter().find(|u| u["name"] == "erin").unwrap().clone();
    assert_eq!(erin["role"], "instructor", "{erin}");
    b.screenshot("admin.png").await;
    b.close().await;
    for id in jobs {
        app.cancel(&id).await;
    }
}

#[tokio::test]
async fn a_sweep_page_follows_its_jobs_and_compare_overlays_them_named_by_what_differs() {
    let app = spawn_app(1).await;
    let body = json!({"name": "lr-study", "base": {"model": "linear", "epochs": 3}, "vary": {"lr": [0.1, 0.01]}});
    let r = app.client.post(app.url("/sweeps")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let sweep: Value = r.json().await.unwrap();
    for j in sweep["jobs"].as_array().unwrap() {
        app.wait_for(j["id"].as_str().unwrap(), 60, status_is("succeeded")).await;
    }
    // Alice's token, anew (the helpers keep only her client).
    let (alice, _) = trainyard::queue::users::rotate_token(&app.server.pool, "alice").await.unwrap();
    let b = Browser::start(1280, 1000).await;
    b.sign_in(&app.base, &alice).await;
    b.click("a[data-nav=sweeps]").await;
    b.until("the sweep in the list", "document.querySelector('#sweeps a')", 20).await;
    assert_eq!(b.text("#sweeps a").await, "lr-study");
    b.click("#sweeps a").await;
    let done = b.until("the sweep's progress", "document.querySelector('#sweep-summary label') && document.querySelector('#sweep-summary label').textContent", 20).await;
    assert_eq!(done, json!("2 of 2 jobs finished"));
    assert_eq!(b.client.execute(&format!("return {}", count("#sweep-jobs tbody tr")), vec![]).await.unwrap(), json!(2));
    b.screenshot("sweep.png").await;

    b.click("#compare-sweep").await;
    b.until("the overlay", "document.querySelectorAll('.charts .uplot canvas').length === 1", 20).await;
    let legend = b.until("both jobs in the legend", "document.querySelector('.u-legend') && document.querySelector('.u-legend').textContent.includes('lr=0.01') && document.querySelector('.u-legend').textContent", 20).await;
    let legend = legend.as_str().unwrap();
    assert!(legend.contains("lr=0.1") && legend.contains("lr=0.01"), "named by what differs: {legend}");
    assert!(!legend.contains("epochs="), "not by what they share: {legend}");
    // Both curves hold their three epochs (uPlot's data, as drawn).
    let lens =
        b.client.execute("return document.querySelectorAll('.u-legend .u-series').length", vec![]).await.unwrap();
    assert_eq!(lens, json!(3), "the x axis and two jobs");
    b.screenshot("compare.png").await;
    b.close().await;
}

/// The README's two pictures, from real CIFAR-10 (not run by make test):
/// `TRAINYARD_CIFAR=DIR cargo test --release --test it -- --ignored readme_screenshots`
/// with DIR the binary directory `../shared/data/prepare-cifar10` prints; writes docs/web-*.png.
#[tokio::test]
#[ignore]
async fn readme_screenshots() {
    let data =
        PathBuf::from(std::env::var("TRAINYARD_CIFAR").expect("TRAINYARD_CIFAR names CIFAR-10's binary directory"));
    let app = spawn_with(tempfile::tempdir().unwrap(), |cfg| {
        cfg.data_dir = data;
        cfg.cpu_workers = Some(1);
        cfg.threads_per_worker = Some(2);
    })
    .await;
    let (alice, _) = trainyard::queue::users::rotate_token(&app.server.pool, "alice").await.unwrap();
    let b = Browser::start(1280, 1300).await;
    b.sign_in(&app.base, &alice).await;
    b.click("a[data-nav=submit]").await;
    b.until("the form", "document.querySelector('#f-lr')", 20).await;
    b.type_into("#f-name", "cnn lr 0.01").await;
    b.type_into("#f-epochs", "12").await;
    b.type_into("#f-lr", "0.01").await;
    b.type_into("#f-train_limit", "5000").await;
    b.click("#submit-job").await;
    b.until("six epochs", &format!("{} >= 6", count("#epochs tbody tr")), 600).await;
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::copy(b.screenshot("readme-job.png").await, docs.join("web-job.png")).unwrap();
    let id = b.client.execute("return location.hash.slice('#/job/'.length)", vec![]).await.unwrap();
    let r = client_for(&alice).post(app.url(&format!("/jobs/{}/cancel", id.as_str().unwrap()))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    b.click("a[data-nav=submit]").await;
    b.until("the form", "document.querySelector('#f-lr')", 20).await;
    b.client.set_window_size(1280, 1000).await.unwrap();
    b.client.execute("document.querySelector('#f-model').value = 'mlp'; document.querySelector('#f-model').dispatchEvent(new Event('change')); return 1;", vec![]).await.unwrap();
    b.type_into("#f-hidden", "512, 0").await;
    b.type_into("#f-lr", "-0.1").await;
    b.click("#submit-job").await;
    b.until("the errors", "document.querySelector('#f-lr-error').textContent", 10).await;
    std::fs::copy(b.screenshot("readme-submit.png").await, docs.join("web-submit.png")).unwrap();
    b.close().await;
}

#[tokio::test]
async fn a_student_starts_from_the_cnns_layers_sees_the_plan_as_they_type_and_submits_their_own() {
    let app = spawn_app(0).await;
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&app.base, &app.bob_token).await;
    b.click("a[data-nav=submit]").await;
    // The named model's plan: its layers, their shapes and the total, from POST /spec/check.
    let plan = b.until("the cnn's plan", "document.querySelector('#network-plan p')?.textContent", 20).await;
    assert_eq!(plan, json!("cnn: 62,006 parameters, about 37 MB to train."));
    assert!(b.text("#network-plan table").await.contains("6×28×28"), "{}", b.text("#network-plan").await);
    // The dataset chosen is described under its field, and the plan follows its images:
    // MNIST (not on this server: the first job would fetch it) is one channel of 28×28.
    assert!(b.text("#dataset-info").await.starts_with("CIFAR-10: 3×32×32 images, 10 classes"));
    let pick = "const s = document.querySelector('#f-dataset'); s.value = arguments[0]; \
        s.dispatchEvent(new Event('change', {bubbles: true})); s.dispatchEvent(new Event('input', {bubbles: true})); return 1;";
    b.client.execute(pick, vec![json!("mnist")]).await.unwrap();
    let info = b.text("#dataset-info").await;
    assert!(info.starts_with("MNIST: 1×28×28 images, 10 classes") && info.contains("missing"), "{info}");
    b.until(
        "the plan on MNIST",
        "document.querySelector('#network-plan p')?.textContent.startsWith('cnn: 44,426 parameters')",
        10,
    )
    .await;
    assert!(b.text("#network-plan table").await.contains("6×24×24"), "{}", b.text("#network-plan").await);
    b.screenshot("submit-mnist.png").await;
    b.client.execute(pick, vec![json!("cifar10")]).await.unwrap();
    b.until(
        "the plan on CIFAR-10 again",
        "document.querySelector('#network-plan p')?.textContent.startsWith('cnn: 62,006')",
        10,
    )
    .await;
    assert!(
        b.until("the layers field hidden", "document.querySelector('[data-field=layers]').hidden", 5).await
            == json!(true)
    );
    // Its layers become the student's own list, to edit.
    b.click("#edit-layers").await;
    assert_eq!(
        b.client.execute("return document.querySelector('#f-model').value", vec![]).await.unwrap(),
        json!("custom")
    );
    let list = b.client.execute("return JSON.parse(document.querySelector('#f-layers').value)", vec![]).await.unwrap();
    assert_eq!(list[0], json!({"conv2d": {"out": 6, "kernel": 5, "stride": 1, "padding": 0}}), "{list}");
    assert_eq!(list.as_array().unwrap().len(), 12);
    // A layer that does not fit is named as one types; a good list shows its plan.
    b.type_into("#f-layers", r#"[{"conv2d": {"out": 8, "kernel": 40}}, "flatten", {"linear": 10}]"#).await;
    // N.B.: what is typed is checked as it changes; the list typed in full gives this error.
    let want = "layers[0].conv2d.kernel: 40 is larger than its 32×32 input";
    let shown = "[...document.querySelectorAll('#network-plan .error')].map((e) => e.textContent)";
    b.until("the layer's error", &format!("{shown}.includes({})", json!(want)), 10).await;
    b.type_into("#f-layers", r#"[{"conv2d": {"out": 8, "kernel": 3, "padding": "same"}}, "batchnorm", "relu", "global_avgpool", "flatten", {"linear": 10}]"#).await;
    let plan =
        b.until("the list's plan", "document.querySelector('#network-plan p:not(.error)')?.textContent", 10).await;
    assert_eq!(plan, json!("conv8-bn-relu-gap-fc10: 330 parameters, about 63 MB to train."));
    assert_eq!(b.text("#layer-editor tr[data-layer='3'] td:nth-child(2)").await, "8×1×1");
    // Layer by layer: remove the batch norm, add a dropout (at the end), move it before the
    // last linear layer; the list and its plan follow.
    b.click("button[aria-label='remove layer 1']").await;
    let summary = "document.querySelector('#network-plan p:not(.error)')?.textContent";
    b.until(
        "the plan without bn",
        &format!("{summary} === 'conv8-relu-gap-fc10: 314 parameters, about 63 MB to train.'"),
        10,
    )
    .await;
    b.client.execute("document.querySelector('#add-layer-kind').value = 'dropout'; return 1;", vec![]).await.unwrap();
    b.click("#add-layer").await;
    b.until("the dropout added", "document.querySelectorAll('#layer-editor tr[data-layer]').length === 6", 10).await;
    b.click("button[aria-label='move layer 5 up']").await;
    b.until("the dropout moved", &format!("{summary}?.startsWith('conv8-relu-gap-drop0.5-fc10:')"), 10).await;
    let list = b.client.execute("return JSON.parse(document.querySelector('#f-layers').value)", vec![]).await.unwrap();
    assert_eq!(list[4], json!({"dropout": 0.5}), "{list}");
    b.screenshot("submit-layers.png").await;
    b.click("#submit-job").await;
    b.until("the job's page", "location.hash.startsWith('#/job/')", 10).await;
    // The job's page names its network and lists its layers one per line.
    let lines = b.until("the job's layers", "document.querySelector('pre.layers')?.textContent.split('\\n')", 20).await;
    assert_eq!(lines[4], json!("{\"dropout\":0.5}"), "{lines}");
    let spec = b
        .client
        .execute("return document.querySelector('pre.layers').closest('dl').textContent", vec![])
        .await
        .unwrap();
    assert!(spec.as_str().unwrap().starts_with("networkconv8-relu-gap-drop0.5-fc10"), "{spec}");
    b.screenshot("job-layers.png").await;
    let list: Value = app.bob.get(app.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["jobs"][0]["network"], "conv8-relu-gap-drop0.5-fc10");
    assert_eq!(list["jobs"][0]["parameters"], 314);
    b.close().await;
}

#[tokio::test]
async fn a_student_picks_an_optimiser_sees_its_own_settings_and_submits_the_mnist_recipe() {
    let app = spawn_app(0).await;
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&app.base, &app.bob_token).await;
    b.click("a[data-nav=submit]").await;
    b.until("the form", "document.querySelector('#f-optimizer') !== null", 20).await;
    let hidden = |f: &str| format!("document.querySelector('[data-field={f}]').hidden");
    // SGD (the default) shows momentum and nesterov, not Adam's betas.
    assert_eq!(
        b.client.execute(&format!("return [{}, {}]", hidden("momentum"), hidden("betas")), vec![]).await.unwrap(),
        json!([false, true])
    );
    b.client
        .execute("const o = document.querySelector('#f-optimizer'); o.value = 'adam'; o.dispatchEvent(new Event('change')); return 1;", vec![])
        .await
        .unwrap();
    b.until("adam's settings", &format!("!{} && {} && !{}", hidden("betas"), hidden("momentum"), hidden("amsgrad")), 5)
        .await;
    // Each setting's placeholder is the chosen optimiser's default (torch's).
    assert_eq!(
        b.client.execute("return document.querySelector('#f-eps').placeholder", vec![]).await.unwrap(),
        json!("1e-8")
    );
    b.click("#recipe-mnist").await;
    let set = "return [document.querySelector('#f-optimizer').value, document.querySelector('#f-lr').value, document.querySelector('#f-lr_schedule').value]";
    assert_eq!(
        b.client.execute(set, vec![]).await.unwrap(),
        json!(["adadelta", "1.0", "{\"step\": {\"every\": 1, \"gamma\": 0.7}}"])
    );
    assert_eq!(
        b.client.execute(&format!("return [{}, {}]", hidden("rho"), hidden("betas")), vec![]).await.unwrap(),
        json!([false, true])
    );
    b.screenshot("submit-optimizer.png").await;
    b.type_into("#f-epochs", "3").await;
    b.click("#submit-job").await;
    b.until("the job's page", "location.hash.startsWith('#/job/')", 10).await;
    let list: Value = app.bob.get(app.url("/jobs")).send().await.unwrap().json().await.unwrap();
    let id = list["jobs"][0]["id"].as_str().unwrap().to_string();
    let job: Value = app.bob.get(app.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    let spec = &job["spec"];
    assert_eq!(
        (spec["optimizer"].as_str(), spec["lr"].as_f64(), spec["rho"].as_f64()),
        (Some("adadelta"), Some(1.0), Some(0.9))
    );
    assert_eq!(spec["lr_schedule"], json!({"step": {"every": 1, "gamma": 0.7}}));
    assert!(spec.get("momentum").is_none() && spec.get("betas").is_none(), "{spec}");
    // The job's page shows the schedule as written, not [object Object].
    let shown = b
        .until(
            "the spec",
            "[...document.querySelectorAll('dl.kv')].map((d) => d.textContent).find((t) => t.includes('lr_schedule'))",
            20,
        )
        .await;
    assert!(shown.as_str().unwrap().contains("lr_schedule{\"step\":{\"every\":1,\"gamma\":0.7}}"), "{shown}");
    b.close().await;
}

#[tokio::test]
async fn the_form_sends_numbers_as_typed_refuses_what_is_not_one_and_the_page_names_a_diverged_run() {
    let app = spawn_app(0).await;
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&app.base, &app.bob_token).await;
    b.click("a[data-nav=submit]").await;
    b.until("the form", "document.querySelector('#f-epochs') !== null", 20).await;
    // The assignment's form says what it would queue, and that nothing like it ran here yet.
    let cost = b.until("the assignment's cost", "document.querySelector('#preset-cost').textContent", 20).await;
    assert!(
        cost.as_str().unwrap().contains("12 jobs") && cost.as_str().unwrap().contains("no time estimate yet"),
        "{cost}"
    );
    b.type_into("#preset-limit", "0x10").await;
    b.click("#submit-preset").await;
    let err = b.until("the preset's error", "document.querySelector('#preset-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("training images") && err.as_str().unwrap().contains("\"0x10\""), "{err}");
    // Not decimal numbers: refused beside their fields, quoting what was typed; nothing sent.
    b.type_into("#f-epochs", "Infinity").await;
    b.type_into("#f-train_limit", "0x10").await;
    b.type_into("#f-lr", "1e999").await;
    b.click("#submit-job").await;
    let err = b.until("the epochs error", "document.querySelector('#f-epochs-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("whole number") && err.as_str().unwrap().contains("\"Infinity\""), "{err}");
    assert!(b.text("#f-train_limit-error").await.contains("\"0x10\""));
    assert!(b.text("#f-lr-error").await.contains("finite") && b.text("#f-lr-error").await.contains("1e999"));
    let list: Value = app.bob.get(app.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "nothing was queued");
    // A 17-digit seed and an MLP's widths arrive as typed (a JS double would round the seed).
    b.client
        .execute("const m = document.querySelector('#f-model'); m.value = 'mlp'; m.dispatchEvent(new Event('change')); return 1;", vec![])
        .await
        .unwrap();
    b.type_into("#f-epochs", "1").await;
    b.type_into("#f-train_limit", "16").await;
    b.type_into("#f-lr", ".01").await;
    b.type_into("#f-seed", "12345678901234567").await;
    b.type_into("#f-hidden", "120, 84").await;
    b.click("#submit-job").await;
    b.until("the job's page", "location.hash.startsWith('#/job/')", 10).await;
    let list: Value = app.bob.get(app.url("/jobs")).send().await.unwrap().json().await.unwrap();
    let spec = &list["jobs"][0]["spec"];
    assert_eq!(spec["seed"].as_u64(), Some(12345678901234567), "{spec}");
    assert_eq!(
        (spec["hidden"].clone(), spec["lr"].as_f64(), spec["train_limit"].as_u64()),
        (json!([120, 84]), Some(0.01), Some(16))
    );

    // A run whose loss went non-finite: "diverged" beside its status, in the list and on its page.
    let id = list["jobs"][0]["id"].as_str().unwrap().to_string();
    let pool = &app.server.pool;
    let claimed = trainyard::queue::claim_next_job(pool, "t", "cpu", trainyard::queue::now_ms(), 60_000, 0)
        .await
        .unwrap()
        .unwrap();
    let lease = trainyard::queue::Lease::new(id.as_str(), claimed.attempt);
    let epoch = trainyard::job::EpochMetrics {
        epoch: 1,
        train_loss: None,
        train_acc: 0.1,
        test_loss: None,
        test_acc: 0.1,
        seconds: 1.0,
        train_seconds: 1.0,
        samples_per_second: 1.0,
        diverged: true,
        lr: Some(0.01),
    };
    assert!(lease.record_epoch(pool, 1, &epoch, trainyard::queue::now_ms(), 60_000).await.unwrap());
    assert!(lease.finish(pool, trainyard::job::JobStatus::Succeeded, None, trainyard::queue::now_ms()).await.unwrap());
    b.client.goto(&format!("{}/#/", app.base)).await.unwrap();
    b.client.refresh().await.unwrap();
    b.until("the diverged badge in the list", "document.querySelector('tr .status.diverged')", 20).await;
    b.client.goto(&format!("{}/#/job/{id}", app.base)).await.unwrap();
    let badge = b
        .until(
            "the job page's badge",
            "document.querySelector('h1 .status.diverged') && document.querySelector('h1').textContent",
            20,
        )
        .await;
    assert!(badge.as_str().unwrap().contains("succeeded") && badge.as_str().unwrap().contains("diverged"), "{badge}");
    // Another student's job is "no such job", not "something went wrong".
    let alices = app.submit(json!({"epochs": 1})).await;
    b.client.goto(&format!("{}/#/job/{alices}", app.base)).await.unwrap();
    let h1 = b.until("the page", "document.querySelector('h1') && document.querySelector('h1').textContent === 'No such job' && document.querySelector('h1').textContent", 20).await;
    assert_eq!(h1, "No such job");
    // Signing out says so.
    b.click("#sign-out").await;
    let said = b
        .until(
            "the sign-in form",
            "document.querySelector('#token-error') && document.querySelector('#token-error').textContent",
            10,
        )
        .await;
    assert_eq!(said, "Signed out.");
    b.close().await;
}

#[tokio::test]
async fn a_search_page_shows_its_rule_rungs_and_epochs_saved_and_resumes_a_trial_stopped_early() {
    let app = spawn_app(1).await;
    // lr from 1e-6 (learns nothing in 3 epochs) to 10 (diverges), with ASHA's reduction 3.
    let mut body = json!({"name": "lr-search", "base": {"model": "linear", "epochs": 3, "train_limit": 40},
        "search": {"lr": {"log_uniform": [0.000001, 10.0]}}, "trials": 4,
        "early_stop": {"asha": {"metric": "test_acc", "grace_epochs": 1, "reduction": 3}}});
    // A sampling seed whose first trial learns (lr from 0.01 to 1) and whose second cannot
    // (lr at most 1e-4), as POST /sweeps/check lists them: the second reaches rung 0 behind
    // the first, and only the top third of the trials there so far goes on.
    let mut seed = None;
    for s in 0..1000u64 {
        body["seed"] = json!(s);
        let (_, plan) = status_of(app.client.post(app.url("/sweeps/check")).json(&body)).await;
        let lr = |i: usize| plan["jobs"][i]["name"].as_str()?.rsplit("lr=").next()?.parse::<f64>().ok();
        if matches!((lr(0), lr(1)), (Some(a), Some(b)) if (0.01..=1.0).contains(&a) && b <= 1e-4) {
            seed = Some(s);
            break;
        }
    }
    let seed = seed.expect("a seed samples a good first trial and a hopeless second");
    let (status, sweep) = status_of(app.client.post(app.url("/sweeps")).json(&body)).await;
    assert_eq!(status, 201, "{sweep}");
    let id = sweep["id"].as_str().unwrap().to_string();
    let ended = |s: &Value| {
        s["search"]["trials"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| !matches!(t["status"].as_str(), Some("queued" | "running") | None)))
    };
    let done = poll(&app.client, &app.url(&format!("/sweeps/{id}")), 180, ended).await;
    let search = &done["search"];
    let trials = search["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert!(
        trials.iter().all(|t| matches!(t["status"].as_str(), Some("succeeded" | "stopped_early"))),
        "every trial finished or stopped early: {search}"
    );
    let stopped: Vec<&Value> = trials.iter().filter(|t| t["status"] == "stopped_early").collect();
    assert!(!stopped.is_empty(), "with reduction 3, some of 4 differing trials stop: {search}");
    let rungs = search["rungs"].as_array().unwrap();
    assert!(!rungs.is_empty(), "a trial reached rung 0: {search}");

    let (alice, _) = trainyard::queue::users::rotate_token(&app.server.pool, "alice").await.unwrap();
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&app.base, &alice).await;
    b.client.goto(&app.url(&format!("/#/sweep/{id}"))).await.unwrap();
    b.until("the search panel's rungs", &format!("{} === {}", count("#search-rungs tbody tr"), rungs.len()), 20).await;
    // Stopped trials count as finished; the rule is said in words.
    assert_eq!(b.text("#sweep-summary label").await, "4 of 4 jobs finished");
    let rule = b.text("#search-rule").await;
    assert!(rule.starts_with("ASHA") && rule.contains("test accuracy") && rule.contains("top 1/3"), "{rule}");
    assert_eq!(b.text("#search-seed").await, seed.to_string());
    // Each rung: its epoch, the trials that reached it and how many went on, as the API says.
    for r in rungs {
        let reached = r["trials"].as_array().unwrap();
        let on = reached.iter().filter(|t| t["promoted"] == true).count();
        let row = b.text(&format!("#search-rungs tr[data-rung=\"{}\"]", r["rung"])).await;
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                r["rung"].to_string(),
                r["epoch"].to_string(),
                reached.len().to_string(),
                on.to_string(),
                (reached.len() - on).to_string()
            ],
            "rung {r}"
        );
    }
    // The epochs saved, as a share of the full search.
    let (run, full, saved) = (
        search["epochs_run"].as_u64().unwrap(),
        search["epochs_full"].as_u64().unwrap(),
        search["epochs_saved"].as_u64().unwrap(),
    );
    assert!(saved > 0, "{search}");
    assert_eq!(
        b.text("#search-epochs").await,
        format!(
            "{run} run of the {full} the trials would train in full; {saved} saved by stopping early ({:.0} %)",
            100.0 * saved as f64 / full as f64
        )
    );
    let best = &search["best"];
    let shown = b.text("#search-best").await;
    assert!(shown.starts_with(best["label"].as_str().unwrap()), "{shown} / {best}");
    assert_eq!(
        b.client.execute("return document.querySelector('#search-best a').getAttribute('href')", vec![]).await.unwrap(),
        json!(format!("#/job/{}", best["id"].as_str().unwrap()))
    );
    // Each stopped trial: its badge, where and why it stopped, and a Resume button; the others none.
    for t in trials {
        let tid = t["id"].as_str().unwrap();
        let row = format!("#search-trials tr[data-job=\"{tid}\"]");
        let text = b.text(&row).await;
        let status =
            b.client.execute(&format!("return document.querySelector('{row}').dataset.status"), vec![]).await.unwrap();
        assert_eq!(status, t["status"], "{text}");
        let button = format!("{row} button[data-resume]");
        let has_button =
            b.client.execute(&format!("return !!document.querySelector('{button}')"), vec![]).await.unwrap();
        if t["status"] == "stopped_early" {
            let at = match t["rung"].as_u64() {
                Some(k) => format!("stopped early at rung {k}"),
                None => format!("stopped early after epoch {}", t["epochs_done"]),
            };
            assert!(text.contains("stopped early") && text.contains(&at), "{text}");
            assert!(text.contains(t["stopped_because"].as_str().unwrap()), "its reason: {text} / {t}");
            assert_eq!(has_button, json!(true), "{text}");
        } else {
            assert_eq!(has_button, json!(false), "{text}");
        }
    }
    // Every job is a trial: the trials table stands for the jobs table.
    assert_eq!(
        b.client
            .execute("return document.querySelector('#sweep-jobs').closest('.table-wrap').hidden", vec![])
            .await
            .unwrap(),
        json!(true)
    );
    // The scatter: lr on a log scale against each trial's best, stopped trials their own series.
    let plotted = trials.iter().filter(|t| t["best"].is_number()).count();
    let stopped_plotted = stopped.iter().filter(|t| t["best"].is_number()).count();
    let chart = b
        .until(
            "the scatter",
            "trainyard.charts().length === 1 && (() => { const u = trainyard.charts()[0]; \
             return [u.scales.x.distr, u.data[0].length, u.data[2].filter((v) => v !== null).length, u.series[1].label, u.series[2].label]; })()",
            10,
        )
        .await;
    assert_eq!(chart, json!([3, plotted, stopped_plotted, "ran on", "stopped early"]));
    let png = b.client.find(Locator::Css("#search-panel")).await.unwrap().screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::write("/tmp/search-panel.png", &png).unwrap();
    b.screenshot("search.png").await;

    // Resume a stopped trial: it is queued again, trains to its epochs, and the page follows.
    let first = stopped[0]["id"].as_str().unwrap();
    let row = format!("#search-trials tr[data-job=\"{first}\"]");
    b.click(&format!("{row} button[data-resume]")).await;
    b.until(
        "the trial queued again",
        &format!("document.querySelector('{row}').dataset.status !== 'stopped_early'"),
        20,
    )
    .await;
    // N.B.: Alice's token was rotated for the browser; the helpers' client holds the old one.
    let job = poll(&client_for(&alice), &app.url(&format!("/jobs/{first}")), 120, status_is("succeeded")).await;
    assert_eq!(job["epochs_done"], 3, "{job}");
    let text = b
        .until(
            "the resumed trial succeeded",
            &format!("document.querySelector('{row}').dataset.status === 'succeeded' && document.querySelector('{row}').textContent"),
            30,
        )
        .await;
    assert!(text.as_str().unwrap().contains("resumed after it stopped early"), "{text}");
    assert!(b.text("#flash").await.starts_with("Resumed"), "{}", b.text("#flash").await);
    // A stopped trial's own page says why it stopped.
    if let Some(other) = stopped.get(1) {
        let oid = other["id"].as_str().unwrap();
        b.client.execute(&format!("location.hash = '#/job/{oid}'"), vec![]).await.unwrap();
        let why = b
            .until(
                "the job's reason",
                "document.querySelector('#stopped-because') && document.querySelector('#stopped-because').textContent",
                20,
            )
            .await;
        assert_eq!(why, other["stopped_because"], "{other}");
    }
    b.close().await;
}

#[tokio::test]
async fn the_search_form_sends_its_numbers_as_typed_and_shows_the_servers_errors_beside_their_fields() {
    let app = spawn_idle(|_| {}).await;
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&app.base, &app.bob_token).await;
    b.click("a[data-nav=submit]").await;
    b.until("the search form", "document.querySelector('#search-form #s-lr-low')", 20).await;
    // The trials' base is the form above; a searched field there gives way to the search.
    b.type_into("#f-epochs", "3").await;
    b.type_into("#f-train_limit", "16").await;
    b.type_into("#f-lr", "0.5").await;
    // Not a number: refused here, quoting it; the server's refusals beside their fields.
    b.type_into("#s-trials", "0x3").await;
    b.click("#submit-search").await;
    let err = b.until("the trials' error", "document.querySelector('#s-trials-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("\"0x3\""), "{err}");
    b.type_into("#s-trials", "4").await;
    b.type_into("#s-reduction", "1").await;
    b.type_into("#s-lr-low", "0").await;
    b.click("#submit-search").await;
    let err = b.until("the reduction's error", "document.querySelector('#s-reduction-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("from 2 to 10"), "{err}");
    assert!(b.text("#s-lr-error").await.contains("log_uniform"), "{}", b.text("#s-lr-error").await);
    assert_eq!(
        b.client
            .execute("return document.querySelector('#s-reduction').getAttribute('aria-invalid')", vec![])
            .await
            .unwrap(),
        json!("true")
    );
    // The grace must be fewer than the trials' epochs (the form above's 3).
    b.type_into("#s-reduction", "3").await;
    b.type_into("#s-lr-low", "1e-5").await;
    b.type_into("#s-grace", "3").await;
    b.click("#submit-search").await;
    let err = b.until("the grace's error", "document.querySelector('#s-grace-error').textContent", 10).await;
    assert!(err.as_str().unwrap().contains("fewer than 3"), "{err}");
    assert_eq!(b.text("#s-reduction-error").await, "", "a fixed field shows no error");
    let (_, list) = status_of(app.bob.get(app.url("/sweeps"))).await;
    assert_eq!(list["sweeps"].as_array().unwrap().len(), 0, "nothing was queued");
    b.screenshot("search-form-errors.png").await;

    // Momentum searched too, a 17-digit seed and the median rule: sent as typed.
    b.type_into("#s-grace", "1").await;
    b.click("#s-momentum-on").await;
    b.type_into("#s-momentum-high", "0.95").await;
    b.type_into("#s-seed", "12345678901234567").await;
    let pick = "const s = document.querySelector('#s-rule'); s.value = 'median'; s.dispatchEvent(new Event('change', {bubbles: true})); return 1;";
    b.client.execute(pick, vec![]).await.unwrap();
    b.type_into("#s-min_trials", "2").await;
    // What it would queue, from POST /sweeps/check, as one types: 4 trials of the 3 epochs above.
    let cost = b
        .until("the search's size", "document.querySelector('#search-cost').textContent.startsWith('4 trials') && document.querySelector('#search-cost').textContent", 10)
        .await;
    assert!(cost.as_str().unwrap().starts_with("4 trials, 12 epochs if none stops early"), "{cost}");
    b.screenshot("search-form.png").await;
    b.click("#submit-search").await;
    let url = b.until("the sweep's page", "location.hash.startsWith('#/sweep/') && location.hash", 20).await;
    let sid = url.as_str().unwrap().trim_start_matches("#/sweep/").to_string();
    let (status, sweep) = status_of(app.bob.get(app.url(&format!("/sweeps/{sid}")))).await;
    assert_eq!(status, 200, "{sweep}");
    let def = &sweep["definition"];
    assert_eq!(def["seed"].as_u64(), Some(12345678901234567), "{def}");
    assert_eq!(def["search"]["lr"]["log_uniform"][0].as_f64(), Some(1e-5), "{def}");
    assert_eq!(def["search"]["momentum"], json!({"uniform": [0.5, 0.95]}), "{def}");
    assert_eq!(
        def["early_stop"],
        json!({"median": {"metric": "test_acc", "grace_epochs": 1, "min_trials": 2}}),
        "{def}"
    );
    assert_eq!((def["base"]["epochs"].as_u64(), def["base"]["train_limit"].as_u64()), (Some(3), Some(16)), "{def}");
    assert!(def["base"].get("lr").is_none(), "the searched lr is not also in the base: {def}");
    assert_eq!(sweep["jobs"].as_array().unwrap().len(), 4);
    // The queued search's page: the median rule in words, no rungs.
    let rule = b.until("the rule", "document.querySelector('#search-rule')?.textContent", 20).await;
    assert!(rule.as_str().unwrap().starts_with("The median stopping rule"), "{rule}");
    assert!(b.text("#search-no-rungs").await.contains("no rungs"));

    // The assignment with its learning rates searched: the checkbox sends lr_search, and the
    // size shown is the server's.
    let preset =
        json!({"preset": "cifar10-assignment", "overrides": {"epochs": 2, "train_limit": 16}, "lr_search": true});
    let (status, plan) = status_of(app.bob.post(app.url("/sweeps/check")).json(&preset)).await;
    assert_eq!(status, 200, "{plan}");
    let n = plan["jobs"].as_array().unwrap().len();
    b.click("a[data-nav=submit]").await;
    b.until("the assignment's form", "document.querySelector('#preset-lr-search')", 20).await;
    b.type_into("#preset-epochs", "2").await;
    b.type_into("#preset-limit", "16").await;
    b.click("#preset-lr-search").await;
    b.until(
        "the searched assignment's size",
        &format!("document.querySelector('#preset-cost').textContent.startsWith('The assignment is {n} jobs')"),
        10,
    )
    .await;
    b.click("#submit-preset").await;
    b.until(
        "the sweep's page",
        &format!("location.hash.startsWith('#/sweep/') && location.hash !== '#/sweep/{sid}'"),
        20,
    )
    .await;
    let rule = b.until("the rule", "document.querySelector('#search-rule')?.textContent", 20).await;
    assert!(rule.as_str().unwrap().starts_with("ASHA"), "{rule}");
    b.screenshot("search-assignment.png").await;
    let (_, list) = status_of(app.bob.get(app.url("/sweeps"))).await;
    let newest = list["sweeps"].as_array().unwrap().iter().find(|s| s["id"] != sid.as_str()).unwrap().clone();
    let (_, sweep) = status_of(app.bob.get(app.url(&format!("/sweeps/{}", newest["id"].as_str().unwrap())))).await;
    assert_eq!(sweep["definition"]["lr_search"], true, "{sweep}");
    assert_eq!(sweep["jobs"].as_array().unwrap().len(), n);
    assert_eq!(sweep["search"]["section"], "lr");
    b.close().await;
}

/// A user the admin adds through the API; their token.
async fn add_user(app: &TestApp, name: &str, role: &str) -> String {
    let (s, u) = status_of(app.admin.post(app.url("/users")).json(&json!({"name": name, "role": role}))).await;
    assert_eq!((s, u["role"].as_str()), (201, Some(role)), "{u}");
    u["token"].as_str().unwrap().to_string()
}

/// The assignment, quick: one epoch on 40 images a job.
async fn submit_assignment(app: &TestApp, token: &str) -> String {
    let body = json!({"preset": "cifar10-assignment", "overrides": {"epochs": 1, "train_limit": 40}});
    let (s, sweep) = status_of(client_for(token).post(app.url("/sweeps")).json(&body)).await;
    assert_eq!(s, 201, "{sweep}");
    sweep["id"].as_str().unwrap().to_string()
}

/// The students' names in the class table, top to bottom.
const CLASS_ROWS: &str =
    "[...document.querySelectorAll('#class-table tbody tr[data-student]')].map((r) => r.dataset.student)";

#[tokio::test]
async fn an_instructor_sorts_and_filters_the_class_and_sees_its_figures_and_a_student_has_no_class_view() {
    // N.B.: the band behind a student's curves needs 2 others here (3 by default), so that
    // alice sees one beside bob and the long-named student.
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let app = spawn_with(dir, |c| {
        c.cpu_workers = Some(1);
        c.class_min_students = 2;
    })
    .await;
    let ines = add_user(&app, "ines", "instructor").await;
    // A name as long as names go must not break the table.
    let long = "a-student-whose-name-is-as-long-as-any-name-may-be.0123456789_xy";
    assert_eq!(long.len(), 64);
    let long_token = add_user(&app, long, "student").await;
    let (alice, _) = trainyard::queue::users::rotate_token(&app.server.pool, "alice").await.unwrap();
    let alice_sweep = submit_assignment(&app, &alice).await;
    let bob_sweep = submit_assignment(&app, &app.bob_token).await;
    let long_sweep = submit_assignment(&app, &long_token).await;
    let (s, class) = status_of(client_for(&ines).get(app.url("/class/cifar10-assignment"))).await;
    assert_eq!(s, 200, "{class}");
    let total = class["students"][0]["jobs"]["total"].as_u64().unwrap();

    let b = Browser::start(1360, 1000).await;
    b.sign_in(&app.base, &ines).await;
    assert_eq!(b.text("#who-name").await, "ines (instructor)");
    b.click("#nav-class").await;
    let rows = b.until("the class table", &format!("{CLASS_ROWS}.length === 3 && {CLASS_ROWS}"), 20).await;
    assert_eq!(rows, json!(["a-student-whose-name-is-as-long-as-any-name-may-be.0123456789_xy", "alice", "bob"]));
    assert_eq!(b.text("#class-title").await, "The CIFAR-10 assignment");
    assert!(b.text("#class-facts").await.starts_with("3 students submitted it"), "{}", b.text("#class-facts").await);
    // Each student's completion as finished / all their runs.
    let done = b.text("tr[data-student=\"bob\"] td.completion").await;
    assert!(done.ends_with(&format!("/{total}")), "{done}");
    // A name opens the student's sweep; another link their jobs.
    assert_eq!(
        b.client
            .execute("return document.querySelector('tr[data-student=\"bob\"] a.name').getAttribute('href')", vec![])
            .await
            .unwrap(),
        json!(format!("#/sweep/{bob_sweep}"))
    );
    // Sorting: by name the other way, then by completion (ties by name).
    b.click("#class-table th[data-col=student] button").await;
    let rows = b.client.execute(&format!("return {CLASS_ROWS}"), vec![]).await.unwrap();
    assert_eq!(rows[0], "bob", "{rows}");
    assert_eq!(rows[2], long, "{rows}");
    assert_eq!(
        b.client
            .execute(
                "return document.querySelector('#class-table th[data-col=student]').getAttribute('aria-sort')",
                vec![]
            )
            .await
            .unwrap(),
        json!("descending")
    );
    b.click("#class-table th[data-col=completion] button").await;
    assert_eq!(
        b.client
            .execute(
                "return document.querySelector('#class-table th[data-col=completion]').getAttribute('aria-sort')",
                vec![]
            )
            .await
            .unwrap(),
        json!("ascending")
    );
    assert_eq!(b.client.execute(&format!("return {CLASS_ROWS}.length"), vec![]).await.unwrap(), json!(3));
    // The name filter hides the others; "only flagged" keeps the flagged ones.
    b.type_into("#class-filter", "bo").await;
    let rows = b.until("the filtered table", &format!("{CLASS_ROWS}.length === 1 && {CLASS_ROWS}"), 5).await;
    assert_eq!(rows, json!(["bob"]));
    assert_eq!(b.text("#class-shown").await, "showing 1 of 3");
    b.type_into("#class-filter", "").await;
    b.until("every row again", &format!("{CLASS_ROWS}.length === 3"), 5).await;
    // The figures: the section's curves and its spread, fetched with the token.
    b.until(
        "both figures",
        "document.querySelector('#class-curves').naturalWidth > 0 && document.querySelector('#class-final').naturalWidth > 0",
        60,
    )
    .await;
    let pick = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
        s.dispatchEvent(new Event('change', {bubbles: true})); return 1;";
    let before = b.client.execute("return document.querySelector('#class-curves').src", vec![]).await.unwrap();
    b.client.execute(pick, vec![json!("#class-section"), json!("lr")]).await.unwrap();
    b.client.execute(pick, vec![json!("#class-student"), json!("alice")]).await.unwrap();
    b.until(
        "the lr section's figure, alice highlighted",
        &format!("document.querySelector('#class-curves').src !== {before} && document.querySelector('#class-curves').naturalWidth > 0 \
                  && document.querySelector('#class-curves').alt.includes('alice')"),
        60,
    )
    .await;
    // The CSV comes with the token, as a file (its blob read here: the page's policy lets no
    // fetch read a blob: URL).
    b.client
        .execute(
            "window.__saved = []; const make = URL.createObjectURL; \
             URL.createObjectURL = (blob) => { if (!blob.type.startsWith('image/')) blob.text().then((t) => window.__saved.push(t)); return make(blob); }; \
             window.__names = []; HTMLAnchorElement.prototype.click = function () { window.__names.push(this.download); }; return 1;",
            vec![],
        )
        .await
        .unwrap();
    b.click("#class-csv").await;
    let saved = b
        .until(
            "the CSV",
            "window.__saved.length && window.__names.length && [window.__names[0], window.__saved[0]]",
            20,
        )
        .await;
    assert_eq!(saved[0], "class-cifar10-assignment.csv");
    let csv = saved[1].as_str().unwrap();
    assert!(csv.starts_with("student,") && csv.contains("\nalice,") && csv.contains("\nbob,"), "{csv}");
    // Nothing wider than the window but the table's own scroll, the long name included.
    let overflow =
        b.client.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the page is wider than the window by {overflow} px");
    b.client.set_window_size(1360, 2000).await.unwrap();
    b.screenshot("class.png").await;
    // On a phone too (the figures are asked for again, as wide as it is).
    b.client.set_window_size(390, 844).await.unwrap();
    b.client.execute("location.hash = '#/class/optimizers'; return 1;", vec![]).await.unwrap();
    b.until(
        "the other assignment",
        "document.querySelector('#class-title')?.textContent === 'Optimisers on the tutorial CNN'",
        20,
    )
    .await;
    b.client.execute("location.hash = '#/class/cifar10-assignment'; return 1;", vec![]).await.unwrap();
    b.until("the phone's figures", "document.querySelector('#class-table') && document.querySelector('#class-curves').naturalWidth > 0 && document.querySelector('#class-curves').naturalWidth < 400", 60)
        .await;
    let overflow =
        b.client.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the class page is wider than a phone by {overflow} px");
    b.screenshot("class-phone.png").await;

    // A student's jobs, from the class: theirs only, and no cancel button for an instructor.
    b.client.set_window_size(1360, 1000).await.unwrap();
    b.click("tr[data-student=\"bob\"] a[data-jobs]").await;
    b.until(
        "bob's jobs",
        "location.hash === '#/jobs?owner=bob' && document.querySelectorAll('#jobs tbody tr').length > 0",
        20,
    )
    .await;
    assert_eq!(b.text("h1").await, "bob's jobs");
    let owners = b.client.execute("return document.querySelectorAll('#jobs tbody tr').length", vec![]).await.unwrap();
    assert_eq!(owners, json!(total), "bob's {total} jobs");
    assert_eq!(b.client.execute(&format!("return {}", count("[data-cancel]")), vec![]).await.unwrap(), json!(0));

    // Live: as the runs finish, the table follows without a reload.
    b.client
        .execute("location.hash = '#/class/cifar10-assignment'; window.__stayed = 'yes'; return 1;", vec![])
        .await
        .unwrap();
    b.until("the class again", &format!("{CLASS_ROWS}.length === 3"), 20).await;
    for id in [&alice_sweep, &bob_sweep, &long_sweep] {
        let ended = |s: &Value| {
            let c = &s["status_counts"];
            c.is_object() && c["queued"].is_null() && c["running"].is_null()
        };
        poll(&client_for(&ines), &app.url(&format!("/sweeps/{id}")), 180, ended).await;
    }
    let (_, class) = status_of(client_for(&ines).get(app.url("/class/cifar10-assignment"))).await;
    let mut want: Vec<String> = class["students"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let j = &r["jobs"];
            format!("{}/{}", j["succeeded"].as_u64().unwrap() + j["stopped_early"].as_u64().unwrap(), j["total"])
        })
        .collect();
    want.sort();
    assert!(want.iter().any(|w| w == &format!("{total}/{total}")), "{want:?}");
    b.until(
        "the finished runs, in the table",
        &format!(
            "[...document.querySelectorAll('#class-table td.completion')].map((c) => c.textContent.trim()).sort().join(',') === {:?}",
            want.join(",")
        ),
        20,
    )
    .await;
    assert_eq!(b.client.execute("return window.__stayed", vec![]).await.unwrap(), json!("yes"), "no reload");
    b.close().await;

    // Alice, a student: no Class in the menu; her sweep compares her with the class (the
    // others' runs have finished: the band is drawn from finished runs).
    let b = Browser::start(1280, 1300).await;
    b.sign_in(&app.base, &alice).await;
    assert_eq!(b.text("#who-name").await, "alice");
    assert_eq!(
        b.client.execute("return document.querySelector('#nav-class').hidden", vec![]).await.unwrap(),
        json!(true)
    );
    b.client.goto(&app.url(&format!("/#/sweep/{alice_sweep}"))).await.unwrap();
    b.until("her figure", SWEEP_FIGURE_LOADED, 60).await;
    assert_eq!(
        b.client.execute("return document.querySelector('#compare-class').checked", vec![]).await.unwrap(),
        json!(true)
    );
    assert!(b.text("#sweep-figures").await.contains("compare me with the class"));
    let asked = b
        .client
        .execute(
            "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/plot?'))",
            vec![],
        )
        .await
        .unwrap();
    assert!(asked.as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("class=true")), "{asked}");
    b.screenshot("sweep-compare.png").await;
    // Unticked: the plain figure.
    b.click("#compare-class").await;
    b.until(
        "the plain figure asked for",
        "performance.getEntriesByType('resource').some((e) => e.name.includes('/plot?') && !e.name.includes('class=true'))",
        20,
    )
    .await;
    // The class view itself is not hers.
    b.client.goto(&app.url("/#/class")).await.unwrap();
    b.until("the refusal", "document.querySelector('h1') && document.querySelector('h1').textContent === 'Class'", 20)
        .await;
    assert_eq!(b.client.execute(&format!("return {}", count("#class-table")), vec![]).await.unwrap(), json!(0));
    b.close().await;
}

#[tokio::test]
async fn with_the_class_band_off_a_students_sweep_shows_plain_figures_and_no_compare_checkbox() {
    let app = spawn_idle(|c| c.class_band = false).await;
    let (alice, _) = trainyard::queue::users::rotate_token(&app.server.pool, "alice").await.unwrap();
    let sweep = submit_assignment(&app, &alice).await;
    let b = Browser::start(1280, 1000).await;
    b.sign_in(&app.base, &alice).await;
    b.client.goto(&app.url(&format!("/#/sweep/{sweep}"))).await.unwrap();
    b.until("the plain figure", SWEEP_FIGURE_LOADED, 60).await;
    assert_eq!(
        b.client
            .execute("return document.querySelector('#compare-class').closest('.check-box').hidden", vec![])
            .await
            .unwrap(),
        json!(true),
        "the server said 403 to class=true: no checkbox"
    );
    assert_eq!(b.text("#sweep-figures .error").await, "", "no error shown");
    // An empty class reads as one: an instructor on the other assignment.
    let ines = add_user(&app, "ines", "instructor").await;
    b.click("#sign-out").await;
    b.sign_in(&app.base, &ines).await;
    b.client.goto(&app.url("/#/class/optimizers")).await.unwrap();
    let said = b
        .until(
            "the empty class",
            "!document.querySelector('#class-empty')?.hidden && document.querySelector('#class-empty').textContent",
            20,
        )
        .await;
    assert_eq!(said, "No student has submitted this assignment yet.");
    assert_eq!(b.text("#class-title").await, "Optimisers on the tutorial CNN");
    b.close().await;
}
