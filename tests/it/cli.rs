//! The `trainyard` binary as a student runs it.

use std::process::Command;
use trainyard::job::JobStatus;

/// The binary, remembering the databases it creates under the system's temporary directory
/// rather than the user's `~/.local/state` (each test's database is a temporary one).
fn trainyard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainyard"));
    c.env("TRAINYARD_STATE_DIR", std::env::temp_dir().join("trainyard-tests-state"));
    c
}

#[test]
fn train_writes_a_metrics_line_per_epoch_and_a_rerun_resumes_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    trainyard::train::data::write_synthetic(&data, 40, 40, 5).unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"name": "cli", "model": "linear", "epochs": 3, "batch_size": 10}"#).unwrap();
    let out = dir.path().join("out");
    let args = [
        "train",
        "--spec",
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];

    let first = trainyard().args(args).arg("--threads").arg("1").output().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("model linear, 30730 trainable parameters"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("epoch ")).count(), 3, "{stdout}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().map(|l| l["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    for key in ["train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_second"] {
        assert!(lines[2][key].is_number(), "{key} in {}", lines[2]);
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("spec.json")).unwrap()).unwrap();
    assert!(saved["seed"].is_u64(), "the drawn seed is recorded: {saved}");
    assert_eq!(saved["lr"], 0.001);

    // The spec has no seed; the rerun takes the saved one, finds the run complete, trains nothing.
    let again = trainyard().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("epoch ")).count(), 0, "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 3);
}

#[test]
fn train_explains_an_invalid_spec_and_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"learning_rate": 0.1, "epochs": 0}"#).unwrap();
    let out = trainyard().args(["train", "--spec", spec.to_str().unwrap(), "--data-dir", "/nowhere"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("learning_rate: unknown field") && stderr.contains("epochs: must be an integer from 1 to 1000"),
        "{stderr}"
    );

    std::fs::write(&spec, r#"{"epochs": 1}"#).unwrap();
    let out = trainyard()
        .args(["train", "--spec", spec.to_str().unwrap(), "--data-dir", "/nowhere", "--out"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("data_batch_1.bin is missing from /nowhere/cifar10"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn train_rejects_a_device_this_machine_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, "{}").unwrap();
    let out = trainyard()
        .args(["train", "--spec", spec.to_str().unwrap(), "--data-dir", "/nowhere", "--device", "cuda:99"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cuda:99 is not available"), "{stderr}");
}

/// The brief's tch trap: unless the binary links libtorch_cuda.so, CUDA is never found.
#[test]
#[cfg(target_os = "linux")]
fn the_binary_links_libtorch_cuda_and_needs_no_ld_library_path() {
    let out = Command::new("ldd").arg(env!("CARGO_BIN_EXE_trainyard")).env_remove("LD_LIBRARY_PATH").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("libtorch_cuda.so")).unwrap_or_else(|| panic!("not linked:\n{text}"));
    assert!(!line.contains("not found"), "{line}");
    assert!(!text.contains("libtorch_cpu.so => not found"), "{text}");
}

/// The binary's jemalloc keeps freed pages for the next batch (`dirty_decay_ms:-1`, set in
/// src/main.rs): its default decay handed them back within milliseconds and every batch
/// faulted them in again. Asked to print its statistics at exit, jemalloc shows the options
/// it runs with, and that an option given in `MALLOC_CONF` still applies over ours.
#[test]
#[cfg(target_os = "linux")]
fn the_allocator_keeps_freed_pages_for_the_next_batch() {
    let out = trainyard().arg("--version").env("MALLOC_CONF", "stats_print:true,muzzy_decay_ms:5").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let option = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("opt.{name}: ")))
            .unwrap_or_else(|| panic!("jemalloc printed no opt.{name}:\n{text}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(option("dirty_decay_ms"), "-1");
    assert_eq!(option("muzzy_decay_ms"), "5");
}

#[test]
fn serve_says_plainly_which_databases_it_takes() {
    let out = trainyard()
        .args(["serve", "--bind", "127.0.0.1:0", "--database", "mysql://root:hunter2@127.0.0.1/x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("expected sqlite://PATH (one box) or postgres://"), "{stderr}");
    assert!(stderr.contains("mysql://root:***@127.0.0.1/x") && !stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn an_unreachable_postgres_is_named_with_its_cause_at_once() {
    let t = std::time::Instant::now();
    let out = trainyard()
        .args(["serve", "--bind", "127.0.0.1:0", "--database", "postgres://lab:hunter2@127.0.0.1:1/queue"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot open the database postgres://lab:***@127.0.0.1:1/queue: Connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2") && !stderr.contains("timed out"), "{stderr}");
    assert!(t.elapsed().as_secs() < 5, "no waiting out a pool timeout: {:?}", t.elapsed());
}

#[test]
fn plot_draws_a_runs_metrics_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    trainyard::train::data::write_synthetic(&data, 20, 20, 2).unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"name": "offline", "model": "linear", "epochs": 3}"#).unwrap();
    let out = dir.path().join("run");
    let trained = trainyard()
        .args([
            "train",
            "--spec",
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(trained.status.success());
    let metrics = out.join("metrics.jsonl");

    let drawn = trainyard().args(["plot", "--metrics", metrics.to_str().unwrap()]).output().unwrap();
    assert!(drawn.status.success(), "{}", String::from_utf8_lossy(&drawn.stderr));
    let img = image::open(out.join("plot.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1000, 700));

    let svg = dir.path().join("loss.svg");
    let drawn = trainyard()
        .args(["plot", "--metrics", metrics.to_str().unwrap(), "--metric", "loss", "--out", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(drawn.status.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("offline (3 of 3 epochs)") && text.contains("train loss"), "the title names the run");

    let bad = trainyard().args(["plot", "--metrics", metrics.to_str().unwrap(), "--out", "x.jpg"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must end in .png or .svg"));
}

#[test]
fn data_synthetic_writes_a_dataset_the_loader_takes() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        trainyard().args(["data", "synthetic", "--per-file", "30", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let d = trainyard::train::data::Data::load(&trainyard::dataset::CIFAR10, dir.path(), tch::Device::Cpu).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (150, 30));
}

#[test]
fn admin_commands_elsewhere_create_no_database_and_say_which_they_used() {
    let elsewhere = tempfile::tempdir().unwrap();
    // The default sqlite://var/trainyard.db, from a directory where no server runs.
    for args in [vec!["users", "add", "carol"], vec!["users", "list"], vec!["report", "some-sweep"]] {
        let out =
            trainyard().args(&args).current_dir(elsewhere.path()).env_remove("TRAINYARD_DATABASE").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("no database at var/trainyard.db") && stderr.contains("--database"), "{stderr}");
        assert!(out.stdout.is_empty(), "no token for a database that does not exist");
    }
    assert!(!elsewhere.path().join("var").exists(), "nothing was created");

    // Against the server's database: rotate gives a new token, the old one dies, and
    // revoking twice says so.
    let db = elsewhere.path().join("lab.db");
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(trainyard::queue::connect(&url)).unwrap();
    let run = |args: &[&str]| trainyard().args(args).env("TRAINYARD_DATABASE", &url).output().unwrap();
    let added = run(&["users", "add", "carol"]);
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(stderr.contains(&format!("using the database {url}")), "{stderr}");
    let old = String::from_utf8(added.stdout).unwrap().trim().to_string();
    let rotated = run(&["users", "rotate", "carol"]);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let new = String::from_utf8(rotated.stdout).unwrap().trim().to_string();
    assert!(new.starts_with("ty_") && new != old);
    let user = |t: &str| rt.block_on(trainyard::queue::users::user_by_token(&pool, t)).unwrap();
    assert!(user(&old).is_none(), "the old token is dead at once");
    assert_eq!(user(&new).unwrap().name, "carol");
    assert!(run(&["users", "revoke", "carol"]).status.success());
    let again = run(&["users", "revoke", "carol"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already revoked"), "{stderr}");
    let nobody = run(&["users", "rotate", "nobody"]);
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no user named \"nobody\""));
}

#[test]
fn serve_binds_first_names_a_busy_address_and_never_prints_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let db = dir.path().join("var").join("db.sqlite");
    let token_file = dir.path().join("admin.token");
    let serve = |bind: &str| {
        let mut c = trainyard();
        c.args(["serve", "--bind", bind, "--cpu-workers", "0", "--database", &format!("sqlite://{}", db.display())])
            .arg("--admin-token-file")
            .arg(&token_file);
        c
    };
    let out = serve(&addr).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("in use"), "{stderr}");
    assert!(!db.exists() && !token_file.exists(), "nothing is created before the port is ours");

    let mut child =
        serve("127.0.0.1:0").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // The first admin's line is the last thing a start says (after the token file is
    // written): everything it would print at start is printed once that line is there.
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).try_for_each(|l| tx.send(l))
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut said = Vec::new();
    while !said.last().is_some_and(|l: &String| l.contains("created the first user")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        said.push(rx.recv_timeout(left).unwrap_or_else(|e| panic!("no first admin's line ({e}): {said:?}")));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert!(!token.is_empty(), "the server wrote its token file: {said:?}");
    let (stdout, stderr) = (said.join("\n"), String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(&token) && !stderr.contains(&token), "the token leaked: {stdout}{stderr}");
    assert!(stdout.contains(&token_file.display().to_string()), "the path is shown: {stdout}");
    // What the server created is its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600, "the database");
    assert_eq!(mode(db.parent().unwrap()), 0o700, "its directory");
    for extra in ["db.sqlite-wal", "db.sqlite-shm"] {
        let p = db.with_file_name(extra);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{extra}");
        }
    }
}

#[test]
fn gc_drops_old_checkpoints_and_backup_copies_a_running_database() {
    use trainyard::queue::{self, users, NewJob};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lab.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(queue::connect(&url)).unwrap();
    // Two finished jobs with checkpoints: one long ago, one just now.
    rt.block_on(async {
        let (ann, _) = users::add_user(&pool, "ann", trainyard::queue::users::Role::Student, 0).await.unwrap();
        for (id, at) in [("old", 1_000), ("new", queue::now_ms())] {
            let job = NewJob {
                id,
                owner_id: ann.id,
                name: None,
                spec: "{}",
                parameters: 1,
                epochs_total: 1,
                group_key: "k",
                idempotency_key: None,
                request_hash: id,
                now: at,
            };
            queue::create_job(&pool, job, 10).await.unwrap();
            let c = queue::claim_next_job(&pool, "w", "cpu", at, 60_000, 0).await.unwrap().unwrap();
            assert!(c.lease().save_checkpoint(&pool, 1, &vec![7u8; 500_000], at).await.unwrap());
            assert!(c.lease().finish(&pool, JobStatus::Succeeded, None, at).await.unwrap());
        }
    });
    let run = |args: &[&str]| trainyard().args(args).env("TRAINYARD_DATABASE", &url).output().unwrap();
    rt.block_on(sqlx_checkpoint(&pool));
    let before = std::fs::metadata(dir.path().join("lab.db")).unwrap().len();
    let out = run(&["gc", "--before", "2000-01-01"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("dropped 1 checkpoints") && stdout.contains("0.5 MB of checkpoints"), "{stdout}");
    // The file itself shrinks by what was dropped, and says so.
    let given_back: f64 = stdout
        .split(" MB given back")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no size given back: {stdout}"));
    assert!(given_back >= 0.4, "{stdout}");
    let after = std::fs::metadata(dir.path().join("lab.db")).unwrap().len();
    assert!(after + 400_000 <= before, "the database file went from {before} to {after} bytes: {stdout}");
    let kept = |id: &str| rt.block_on(queue::checkpoints::get_checkpoint(&pool, id)).unwrap().is_some();
    assert!(!kept("old") && kept("new"), "only the old job's checkpoint went");
    assert!(String::from_utf8_lossy(&run(&["gc", "--before", "30d"]).stdout).contains("dropped 0 checkpoints"));
    // Whole jobs, if asked: the old one goes with its epochs; the new one stays.
    let out = run(&["gc", "--before", "2000-01-01", "--jobs"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dropped 1 jobs and 0 sweeps"), "{out:?}");
    assert!(rt.block_on(queue::get_job(&pool, "old")).unwrap().is_none());
    assert!(rt.block_on(queue::get_job(&pool, "new")).unwrap().is_some() && kept("new"));

    let copy = dir.path().join("backup.db");
    let out = run(&["backup", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds everyone's jobs and token hashes: its owner's alone");
    let restored = rt.block_on(queue::open_existing(&format!("sqlite://{}", copy.display()))).unwrap();
    assert_eq!(rt.block_on(users::count_users(&restored)).unwrap(), 1);
    assert!(rt.block_on(queue::get_job(&restored, "new")).unwrap().is_some());
    let again = run(&["backup", copy.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

/// Moves the write-ahead log into the database file, so the file's size is the data's.
async fn sqlx_checkpoint(pool: &trainyard::queue::Pool) {
    if let trainyard::queue::Pool::Sqlite(p) = pool {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.unwrap();
    }
}

#[test]
fn train_takes_a_list_of_layers_as_the_service_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    trainyard::train::data::write_synthetic(&data, 20, 20, 2).unwrap();
    let spec = dir.path().join("own.json");
    let layers =
        r#"[{"conv2d": {"out": 4, "kernel": 3}}, "batchnorm", "relu", "global_avgpool", "flatten", {"linear": 10}]"#;
    std::fs::write(&spec, format!(r#"{{"layers": {layers}, "epochs": 1, "batch_size": 10}}"#)).unwrap();
    let out = dir.path().join("out");
    let run = trainyard()
        .args(["train", "--threads", "1", "--spec", spec.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("model conv4-bn-relu-gap-fc10, 170 trainable parameters"), "{stdout}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("spec.json")).unwrap()).unwrap();
    assert_eq!(saved["model"], "custom");
    let bytes = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("1.running_var").is_ok(), "the running statistics are in the checkpoint");
}

#[test]
fn data_import_makes_a_dataset_that_data_list_shows_and_train_trains() {
    let dir = tempfile::tempdir().unwrap();
    let (src, store) = (dir.path().join("src"), dir.path().join("store"));
    for (class, level) in [("dark", 20u8), ("light", 230u8)] {
        std::fs::create_dir_all(src.join(class)).unwrap();
        for i in 0..10u8 {
            image::GrayImage::from_pixel(6, 6, image::Luma([level + i]))
                .save(src.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(src.join("light/9.png"), b"broken").unwrap();
    let import = |extra: &[&str]| {
        let mut c = trainyard();
        c.args(["data", "import", "tones-cli"]).arg(&src).arg("--data-dir").arg(&store).args(extra);
        c.output().unwrap()
    };
    let out = import(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("light/9.png: ") && stderr.contains("--skip-bad"), "{stderr}");
    let out = import(&["--skip-bad"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("15 training and 4 test images of 1×6×6, 2 classes (dark, light)"), "{stdout}");
    assert!(stdout.contains("\"dataset\": \"tones-cli\""), "{stdout}");

    let list = trainyard().args(["data", "list", "--data-dir"]).arg(&store).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    let line = listed.lines().find(|l| l.starts_with("tones-cli")).unwrap_or_default();
    assert!(line.contains("1×6×6") && line.contains("present"), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("mnist") && l.contains("missing")), "{listed}");

    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"dataset": "tones-cli", "model": "linear", "epochs": 2, "batch_size": 5, "lr": 0.05}"#)
        .unwrap();
    let out = trainyard()
        .args(["train", "--threads", "1", "--spec", spec.to_str().unwrap(), "--data-dir"])
        .arg(&store)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("model linear, 74 trainable parameters"), "{stdout}");
}
