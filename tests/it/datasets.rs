//! Datasets (issue 25): each format read from small files written here (IDX plain and
//! gzipped, CIFAR-100's binary records, CIFAR-10 in today's layouts), a lab's folder of
//! PNG and JPEG images imported (and its bad files named), `GET /datasets`, a job per
//! dataset that learns, and a missing dataset holding only its own jobs.

use crate::helpers::*;
use serde_json::{json, Value};
use std::path::Path;
use trainyard::dataset::formats::{write_idx, DataError};
use trainyard::dataset::import::{import, ImportOptions};
use trainyard::dataset::{self, CIFAR10, CIFAR100, CIFAR100_COARSE_LABELS, FASHION_MNIST, MNIST};
use trainyard::train::data::Data;

/// `n` learnable images of `c`×`h`×`w` (CHW bytes) and their labels, cycling over
/// `classes`: class k lights cell k of a grid (bright on dark), plus noise.
pub fn synthetic(n: usize, classes: usize, c: usize, h: usize, w: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let cols = (classes as f64).sqrt().ceil() as usize;
    let cell = (h.min(w) / cols).max(1);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % 41) as i32 - 20
    };
    let (mut images, mut labels) = (Vec::with_capacity(n * c * h * w), Vec::with_capacity(n));
    for i in 0..n {
        let k = (i * 7 + i / classes) % classes;
        labels.push(k as u8);
        let (row, col) = (k / cols, k % cols);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let lit = y / cell == row && x / cell == col;
                    let base = if lit { 220 - 30 * (ch as i32 % 2) } else { 30 };
                    images.push((base + noise()).clamp(0, 255) as u8);
                }
            }
        }
    }
    (images, labels)
}

/// MNIST's four files (train gzipped, test plain) in `dir`.
fn write_mnist(dir: &Path, train: usize, test: usize) -> (Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    let (images, labels) = synthetic(train, 10, 1, 28, 28, 1);
    write_idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
        &images,
        &labels,
        28,
        28,
    )
    .unwrap();
    let (timages, tlabels) = synthetic(test, 10, 1, 28, 28, 2);
    write_idx(&dir.join("t10k-images-idx3-ubyte"), &dir.join("t10k-labels-idx1-ubyte"), &timages, &tlabels, 28, 28)
        .unwrap();
    (images, labels)
}

/// CIFAR-100's train.bin and test.bin in `dir`: a coarse label (the fine one / 5), the fine
/// label, then the image.
fn write_cifar100(dir: &Path, train: usize, test: usize) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let mut fine_of_train = Vec::new();
    for (file, n, seed) in [("train.bin", train, 3), ("test.bin", test, 4)] {
        let (images, labels) = synthetic(n, 100, 3, 32, 32, seed);
        let mut out = Vec::new();
        for (i, &fine) in labels.iter().enumerate() {
            out.extend([fine / 5, fine]);
            out.extend_from_slice(&images[i * 3072..(i + 1) * 3072]);
        }
        if file == "train.bin" {
            fine_of_train = labels;
        }
        std::fs::write(dir.join(file), out).unwrap();
    }
    fine_of_train
}

fn labels_of(split: &trainyard::train::data::Split) -> Vec<i64> {
    Vec::<i64>::try_from(split.labels()).unwrap()
}

#[test]
fn idx_files_plain_and_gzipped_load_as_mnist_from_either_folder() {
    let store = tempfile::tempdir().unwrap();
    let (images, labels) = write_mnist(&store.path().join("mnist"), 30, 12);
    let data = Data::load(&MNIST, store.path(), tch::Device::Cpu).unwrap();
    assert_eq!(data.train.raw_images().size(), [30, 1, 28, 28]);
    assert_eq!(data.test.len(), 12);
    assert_eq!(labels_of(&data.train), labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    assert_eq!(Vec::<u8>::try_from(data.train.raw_images().view([-1])).unwrap(), images, "pixels as written");
    // Normalised as PyTorch's MNIST example: (x/255 − 0.1307) / 0.3081.
    let x = data.train.images_from(0, 1).double_value(&[0, 0, 0, 0]);
    assert!((x - (f64::from(images[0]) / 255.0 - 0.1307) / 0.3081).abs() < 1e-5, "{x}");

    // torchvision's own layout (MNIST/raw) serves too; Fashion-MNIST reads the same format.
    let tv = tempfile::tempdir().unwrap();
    write_mnist(&tv.path().join("MNIST/raw"), 20, 10);
    assert_eq!(Data::load(&MNIST, tv.path(), tch::Device::Cpu).unwrap().train.len(), 20);
    write_mnist(&tv.path().join("fashion-mnist"), 20, 10);
    assert_eq!(Data::load(&FASHION_MNIST, tv.path(), tch::Device::Cpu).unwrap().test.len(), 10);
}

#[test]
fn a_damaged_or_missing_idx_file_is_named_with_what_is_wrong() {
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().join("mnist");
    write_mnist(&dir, 10, 10);
    let f = dir.join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let err = Data::load(&MNIST, store.path(), tch::Device::Cpu).err().expect("a truncated file fails");
    assert!(matches!(err, DataError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("t10k-images-idx3-ubyte") && text.contains("promises 7840 values"), "{text}");

    std::fs::write(&f, b"not gzip, not idx").unwrap();
    let text = Data::load(&MNIST, store.path(), tch::Device::Cpu).err().unwrap().to_string();
    assert!(text.contains("does not start as an IDX file"), "{text}");

    // A header that promises no images is not a split.
    write_idx(&f, &dir.join("t10k-labels-idx1-ubyte"), &[], &[], 28, 28).unwrap();
    let text = Data::load(&MNIST, store.path(), tch::Device::Cpu).err().unwrap().to_string();
    assert!(text.contains("holds no images"), "{text}");

    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = dataset::check_present(&MNIST, store.path()).unwrap_err();
    assert_eq!(err.state(), "missing");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte") && err.to_string().contains("DATA_DIR/mnist"), "{err}");
}

#[test]
fn cifar100_binary_reads_its_fine_labels_and_its_coarse_ones() {
    let store = tempfile::tempdir().unwrap();
    let fine = write_cifar100(&store.path().join("cifar100"), 50, 20);
    let data = Data::load(&CIFAR100, store.path(), tch::Device::Cpu).unwrap();
    assert_eq!(data.train.raw_images().size(), [50, 3, 32, 32]);
    assert_eq!(labels_of(&data.train), fine.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    let coarse = Data::load(&CIFAR100_COARSE_LABELS, store.path(), tch::Device::Cpu).unwrap();
    assert_eq!(labels_of(&coarse.train), fine.iter().map(|&l| i64::from(l / 5)).collect::<Vec<_>>());
    assert_eq!(coarse.train.raw_images(), data.train.raw_images(), "the same images");
    // A record of CIFAR-10's size is not one of CIFAR-100's.
    std::fs::write(store.path().join("cifar100/test.bin"), vec![0u8; 3073 * 2]).unwrap();
    let err = Data::load(&CIFAR100, store.path(), tch::Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("not a whole number of 3074-byte records"), "{err}");
}

#[test]
fn cifar10_is_found_in_todays_layouts_and_in_its_own_folder() {
    for sub in ["", "cifar-10-batches-bin", "cifar10"] {
        let store = tempfile::tempdir().unwrap();
        let dir = if sub.is_empty() { store.path().to_path_buf() } else { store.path().join(sub) };
        trainyard::train::data::write_synthetic(&dir, 4, 6, 1).unwrap();
        assert_eq!(CIFAR10.locate(store.path()), dir, "{sub:?}");
        dataset::check_present(&CIFAR10, store.path()).unwrap();
        let data = Data::load(&CIFAR10, store.path(), tch::Device::Cpu).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (20, 6), "{sub:?}");
    }
    // An empty store: the files belong in its cifar10 folder.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(CIFAR10.locate(empty.path()), empty.path().join("cifar10"));
}

/// A folder of class folders of images: each image `size` (h, w), RGB PNG unless `jpeg` or
/// `grey`.
fn write_images(dir: &Path, classes: &[&str], per_class: usize, size: (u32, u32), seed: u64, jpeg: bool) {
    let (h, w) = size;
    let (images, labels) = synthetic(per_class * classes.len(), classes.len(), 3, h as usize, w as usize, seed);
    let plane = (h * w) as usize;
    for (i, &label) in labels.iter().enumerate() {
        let chw = &images[i * 3 * plane..(i + 1) * 3 * plane];
        let rgb: Vec<u8> = (0..plane).flat_map(|p| [chw[p], chw[plane + p], chw[2 * plane + p]]).collect();
        let img = image::RgbImage::from_raw(w, h, rgb).unwrap();
        let class_dir = dir.join(classes[label as usize]);
        std::fs::create_dir_all(&class_dir).unwrap();
        let name = format!("img{i:03}.{}", if jpeg { "jpg" } else { "png" });
        img.save(class_dir.join(name)).unwrap();
    }
}

fn options(name: &str, source: &Path, store: &Path) -> ImportOptions {
    ImportOptions {
        name: name.into(),
        source: source.into(),
        data_dir: store.into(),
        size: None,
        test_fraction: 0.2,
        seed: 0,
        replace: false,
        skip_bad: false,
        title: None,
    }
}

#[test]
fn an_image_folder_of_png_and_jpeg_imports_into_records_with_its_classes() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write_images(&src.path().join("train"), &["cat", "bird", "dog"], 8, (12, 10), 5, false);
    write_images(&src.path().join("test"), &["cat", "bird", "dog"], 2, (12, 10), 6, true);
    // A class's subfolders hold its images too, as for torchvision's ImageFolder.
    let nested = std::fs::read_dir(src.path().join("test/dog")).unwrap().next().unwrap().unwrap();
    std::fs::create_dir_all(src.path().join("test/dog/more")).unwrap();
    std::fs::rename(nested.path(), src.path().join("test/dog/more").join(nested.file_name())).unwrap();
    std::fs::write(src.path().join("train/cat/notes.txt"), "not an image").unwrap();
    let got = import(&options("pets-import", src.path(), store.path())).unwrap();
    let d = &got.description;
    assert_eq!(d.classes, ["bird", "cat", "dog"], "class folders in name order, as torchvision's ImageFolder");
    assert_eq!((d.channels, d.height, d.width, d.train_images, d.test_images), (3, 12, 10, 24, 6));
    assert_eq!(got.skipped, ["train/cat/notes.txt: not a PNG or JPEG file"]);
    assert!(
        got.summary().contains("24 training and 6 test images of 3×12×10, 3 classes (bird, cat, dog)"),
        "{}",
        got.summary()
    );

    // The records hold each PNG's pixels channel by channel (red plane, then green, then
    // blue, each row by row), with its class, in a mixed order (train_limit takes the first
    // N: they must not be one class).
    let bin = std::fs::read(store.path().join("pets-import/train.bin")).unwrap();
    assert_eq!(bin.len(), 24 * (1 + 3 * 12 * 10));
    let labels: Vec<u8> = bin.chunks_exact(361).map(|r| r[0]).collect();
    assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 8);
    assert!(labels[..8].iter().any(|&l| l != labels[0]), "mixed: {labels:?}");
    let planes = |png: &image::RgbImage| -> Vec<u8> {
        (0..3).flat_map(|c| png.pixels().map(move |p| p[c]).collect::<Vec<_>>()).collect()
    };
    let classes = ["bird", "cat", "dog"];
    let record = &bin[..361];
    let source = walk(&src.path().join("train"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .find(|p| planes(&image::open(p).unwrap().into_rgb8()) == record[1..])
        .expect("the first record is one of the PNGs, plane by plane");
    assert!(source.parent().unwrap().ends_with(classes[record[0] as usize]), "{source:?} has class {}", record[0]);

    // The mean and std are the training images' own, per channel.
    let mut sum = 0.0;
    for r in bin.chunks_exact(361) {
        sum += r[1..121].iter().map(|&v| f64::from(v) / 255.0).sum::<f64>();
    }
    assert!((d.mean[0] - sum / (24.0 * 120.0)).abs() < 1e-5, "{:?}", d.mean);

    // It is a dataset now: named, described, loaded (its checksum checked).
    let named = dataset::named("pets-import").unwrap();
    assert_eq!((named.num_classes(), named.train_images), (3, 24));
    assert_eq!(dataset::import::read_description(&store.path().join("pets-import/dataset.json")).unwrap(), *d);
    let data = Data::load(named, store.path(), tch::Device::Cpu).unwrap();
    assert_eq!(data.test.raw_images().size(), [6, 3, 12, 10]);

    // A second import of the same name is refused without --replace.
    let again = import(&options("pets-import", src.path(), store.path())).unwrap_err();
    assert!(again.contains("exists already") && again.contains("--replace"), "{again}");

    // A changed file is caught by its checksum when it is loaded.
    let mut changed = bin.clone();
    changed[5] ^= 0xff;
    std::fs::write(store.path().join("pets-import/train.bin"), changed).unwrap();
    let err = Data::load(named, store.path(), tch::Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("SHA-256") && err.to_string().contains("train.bin"), "{err}");
}

#[test]
fn an_import_names_each_corrupt_file_and_odd_size_and_imports_nothing_until_told() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write_images(src.path(), &["a", "b"], 10, (16, 16), 7, false);
    std::fs::write(src.path().join("a/broken.png"), b"\x89PNG\r\n\x1a\n but then nothing").unwrap();
    let odd = image::GrayImage::from_pixel(20, 24, image::Luma([9]));
    odd.save(src.path().join("b/odd.png")).unwrap();

    let err = import(&options("odd", src.path(), store.path())).unwrap_err();
    assert!(err.contains("2 different sizes") && err.contains("24x20 (HxW): 1 files, e.g. b/odd.png"), "{err}");
    assert!(!store.path().join("odd").exists(), "nothing is written");

    let mut sized = options("odd", src.path(), store.path());
    sized.size = Some((16, 16));
    let err = import(&sized).unwrap_err();
    assert!(err.contains("a/broken.png") && err.contains("--skip-bad"), "{err}");
    assert!(!store.path().join("odd").exists(), "nothing is written");

    sized.skip_bad = true;
    let got = import(&sized).unwrap();
    assert_eq!(got.resized, 1, "the odd one is resized");
    assert!(got.skipped.iter().any(|s| s.starts_with("a/broken.png")), "{:?}", got.skipped);
    // Split by fraction (no train/ and test/): 20 % of each class's 11 files (2), and the
    // broken file (a training one, by seed 0's order) left out.
    assert!(got.split_by_fraction);
    assert_eq!((got.description.train_images, got.description.test_images), (17, 4));
    assert_eq!(got.description.channels, 3, "a grey image among colour ones is made colour");

    // The same folder and seed split the same way.
    let other = tempfile::tempdir().unwrap();
    let again = import(&ImportOptions { data_dir: other.path().into(), ..sized.clone() }).unwrap();
    assert_eq!(again.description.sha256, got.description.sha256);
}

#[test]
fn an_import_refuses_a_single_class_a_builtin_name_and_bad_options() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write_images(src.path(), &["only"], 4, (8, 8), 1, false);
    let err = import(&options("solo", src.path(), store.path())).unwrap_err();
    assert!(err.contains("at least two"), "{err}");
    let err = import(&options("mnist", src.path(), store.path())).unwrap_err();
    assert!(err.contains("built-in"), "{err}");
    let err = import(&options("Bad Name", src.path(), store.path())).unwrap_err();
    assert!(err.contains("a-z"), "{err}");
    let mut o = options("frac", src.path(), store.path());
    o.test_fraction = 1.0;
    assert!(import(&o).unwrap_err().contains("--test-fraction"));

    // train/ without test/ is said as such (not read as a class named "train").
    let half = tempfile::tempdir().unwrap();
    write_images(&half.path().join("train"), &["a", "b"], 2, (8, 8), 1, false);
    let err = import(&options("half", half.path(), store.path())).unwrap_err();
    assert!(err.contains("has train/ but no test/"), "{err}");

    // Files left out must not empty a class.
    let broken = tempfile::tempdir().unwrap();
    write_images(&broken.path().join("a"), &["x"], 4, (8, 8), 1, false);
    std::fs::rename(broken.path().join("a/x"), broken.path().join("good")).unwrap();
    std::fs::create_dir_all(broken.path().join("bad")).unwrap();
    for i in 0..3 {
        std::fs::write(broken.path().join(format!("bad/{i}.png")), b"not a png").unwrap();
    }
    std::fs::remove_dir_all(broken.path().join("a")).unwrap();
    let mut o = options("emptied", broken.path(), store.path());
    o.skip_bad = true;
    let err = import(&o).unwrap_err();
    assert!(err.contains("these classes have no training image: bad"), "{err}");
}

#[test]
fn replace_keeps_an_imports_shape_and_never_touches_what_is_not_an_import() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write_images(src.path(), &["a", "b"], 5, (8, 8), 1, false);
    import(&options("kept-shape", src.path(), store.path())).unwrap();
    let mut again = options("kept-shape", src.path(), store.path());
    again.replace = true;
    again.seed = 5;
    let replaced = import(&again).unwrap();
    assert_eq!(dataset::named("kept-shape").unwrap().sha256.len(), 2);
    assert_eq!(replaced.description.classes, ["a", "b"]);
    // Another shape: refused, the jobs of the name were planned for 3×8×8.
    again.size = Some((10, 10));
    let err = import(&again).unwrap_err();
    assert!(err.contains("3×8×8") && err.contains("3×10×10") && err.contains("new name"), "{err}");

    // A folder of the data directory that is not an import is never replaced, and the
    // images are never inside what is replaced.
    let photos = store.path().join("photos");
    write_images(&photos, &["a", "b"], 5, (8, 8), 2, false);
    let mut o = options("photos", &photos, store.path());
    o.replace = true;
    let err = import(&o).unwrap_err();
    assert!(err.contains("is not an imported dataset"), "{err}");
    assert!(photos.join("a").is_dir(), "the photos are where they were");
    let inside = store.path().join("kept-shape/more");
    write_images(&inside, &["a", "b"], 5, (8, 8), 3, false);
    let mut o = options("kept-shape", &inside, store.path());
    o.replace = true;
    let err = import(&o).unwrap_err();
    assert!(err.contains("are inside the dataset"), "{err}");
    assert!(inside.join("a").is_dir());
}

/// A store with CIFAR-10 (today's layout: files in the data directory itself), MNIST,
/// CIFAR-100 and an import of 8×8 grey images.
fn full_store(dir: &Path) {
    let data = write_data(dir);
    write_mnist(&data.join("mnist"), 400, 100);
    write_cifar100(&data.join("cifar100"), 1000, 200);
    let src = dir.join("shapes-src");
    write_images(&src, &["circle", "square", "triangle"], 60, (8, 8), 9, false);
    for e in walk(&src) {
        let grey = image::open(&e).unwrap().into_luma8();
        grey.save(&e).unwrap();
    }
    let mut o = options("shapes", &src, &data);
    o.title = Some("Shapes".into());
    import(&o).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_each_dataset_learns_and_get_datasets_says_what_is_here() {
    let dir = tempfile::tempdir().unwrap();
    full_store(dir.path());
    let app = spawn_with(dir, |c| c.cpu_workers = Some(1)).await;

    let (status, body) = app.get("/datasets").await;
    assert_eq!(status, 200, "{body}");
    let by: std::collections::HashMap<&str, &Value> =
        body["datasets"].as_array().unwrap().iter().map(|d| (d["name"].as_str().unwrap(), d)).collect();
    assert_eq!(by["cifar10"]["state"], "present");
    assert_eq!(by["mnist"]["shape"], json!([1, 28, 28]));
    assert_eq!(by["mnist"]["state"], "present");
    assert_eq!(by["cifar100"]["num_classes"], 100);
    assert_eq!(by["cifar100-coarse"]["state"], "present", "served by cifar100's files");
    assert_eq!(by["shapes"]["classes"], json!(["circle", "square", "triangle"]));
    assert_eq!((by["shapes"]["shape"].clone(), by["shapes"]["builtin"].clone()), (json!([1, 8, 8]), json!(false)));
    assert_eq!(by["fashion-mnist"]["state"], "missing");
    assert_eq!(by["fashion-mnist"]["fetchable"], true);
    assert!(by["fashion-mnist"]["why"].as_str().unwrap().contains("the first job that needs it fetches it"));
    let (_, spec) = app.get("/spec").await;
    let field = spec["fields"].as_array().unwrap().iter().find(|f| f["name"] == "dataset").unwrap().clone();
    assert!(field["choices"].as_array().unwrap().contains(&json!("shapes")), "{field}");

    let jobs = [
        ("mnist", json!({"model": "linear", "dataset": "mnist", "epochs": 3, "batch_size": 16, "lr": 0.01}), 0.9),
        ("cifar100", json!({"model": "linear", "dataset": "cifar100", "epochs": 4, "batch_size": 16, "lr": 0.01}), 0.5),
        (
            "shapes",
            json!({"dataset": "shapes", "epochs": 4, "batch_size": 8, "lr": 0.01,
            "layers": [{"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 3}]}),
            0.9,
        ),
    ];
    let mut ids = Vec::new();
    for (name, spec, _) in &jobs {
        let r = app.post_job(spec.clone()).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["spec"]["dataset"], *name);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for ((name, _, least), id) in jobs.iter().zip(&ids) {
        app.wait_for(id, 240, status_is("succeeded")).await;
        let (_, m) = app.get(&format!("/jobs/{id}/metrics")).await;
        let last = m["epochs"].as_array().unwrap().last().unwrap().clone();
        let acc = last["test_acc"].as_f64().unwrap();
        assert!(acc > *least, "{name} learns: {last}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_are_checked_against_their_datasets_shape_and_size() {
    let dir = tempfile::tempdir().unwrap();
    full_store(dir.path());
    // N.B.: one worker: a server that runs none leaves judging the data to the workers' machines.
    let app = spawn_with(dir, |c| c.cpu_workers = Some(1)).await;
    // The MNIST example's network, its input from the dataset: 1,199,882 parameters.
    let example = json!([{"conv2d": {"out": 32, "kernel": 3}}, "relu", {"conv2d": {"out": 64, "kernel": 3}}, "relu",
        {"maxpool2d": 2}, {"dropout": 0.25}, "flatten", {"linear": 128}, "relu", {"dropout": 0.5}, {"linear": 10}]);
    let (status, body) =
        status_of(app.client.post(app.url("/spec/check")).json(&json!({"dataset": "mnist", "layers": example}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["network"]["parameters"], 1_199_882);
    assert_eq!(body["network"]["layers"][0]["output"], json!([32, 26, 26]));
    assert_eq!(body["accepted"], true);

    // The tutorial's CNN does not fit 8×8 images: a 422 that says where and why.
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"dataset": "shapes"}))).await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(text.contains("shapes") && text.contains("1×8×8"), "{text}");
    // The linear model's output follows the dataset's classes.
    let (status, body) =
        status_of(app.client.post(app.url("/spec/check")).json(&json!({"dataset": "cifar100", "model": "linear"})))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["network"]["parameters"], 3072 * 100 + 100);

    // train_limit is bounded by the dataset's own training split.
    let (status, body) =
        status_of(app.client.post(app.url("/jobs")).json(&json!({"dataset": "mnist", "train_limit": 60001}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("60000"), "{body}");
    let r = app.post_job(json!({"dataset": "mnist", "model": "linear", "train_limit": 60000, "epochs": 1})).await;
    assert_eq!(r.status(), 201);

    // An unknown dataset names the ones there are.
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&json!({"dataset": "imagenet"}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("\\\"shapes\\\"") || body.to_string().contains("shapes"), "{body}");
    assert_eq!(body["error"]["field"], "dataset");

    // An import whose folder is gone cannot come back by itself: a 422 naming what is here.
    std::fs::remove_dir_all(app.dir.path().join("data/shapes")).unwrap();
    let own = json!({"dataset": "shapes", "layers": ["flatten", {"linear": 3}]});
    let (status, body) = status_of(app.client.post(app.url("/jobs")).json(&own)).await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(text.contains("cannot be trained on this server now") && text.contains("mnist"), "{text}");
    let (_, ds) = app.get("/datasets").await;
    assert!(ds["datasets"].as_array().unwrap().iter().all(|d| d["name"] != "shapes"), "no longer listed: {ds}");
    let (_, spec) = app.get("/spec").await;
    let field = spec["fields"].as_array().unwrap().iter().find(|f| f["name"] == "dataset").unwrap().clone();
    assert!(!field["choices"].as_array().unwrap().contains(&json!("shapes")), "nor offered: {field}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dataset_holds_only_its_own_jobs_until_its_files_arrive() {
    let app = spawn_app(1).await;
    let store = app.dir.path().join("data");
    // MNIST is not here and cannot be fetched (the tests' mirror does not answer).
    let mnist = app.submit(json!({"model": "linear", "dataset": "mnist", "epochs": 1, "batch_size": 16})).await;
    let held = app.wait_for(&mnist, 60, |j| j["waiting_for"].as_str().is_some_and(|w| w.contains("MNIST"))).await;
    assert_eq!(held["status"], "queued", "{held}");
    assert!(held["waiting_for"].as_str().unwrap().contains("fetching it failed"), "{held}");

    // CIFAR-10's jobs go on meanwhile, and do not wait on MNIST.
    let cifar = app.submit(json!({"model": "linear", "epochs": 1, "batch_size": 20})).await;
    let shown = app.job(&cifar).await;
    assert!(shown.get("waiting_for").is_none_or(Value::is_null), "{shown}");
    app.wait_for(&cifar, 60, status_is("succeeded")).await;
    assert_eq!(app.job(&mnist).await["status"], "queued");

    // The queue, readiness and the datasets name it.
    let (_, q) = app.get("/queue").await;
    assert!(q["problems"].as_array().unwrap().iter().any(|p| p["dataset"] == "mnist"), "{q}");
    assert!(q["jobs"].as_array().unwrap().iter().any(|j| j["dataset"] == "mnist"), "{q}");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reasons"].to_string().contains("MNIST"), "{ready}");
    let (_, ds) = app.get("/datasets").await;
    let m = ds["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "mnist").unwrap().clone();
    assert_eq!(m["state"], "missing", "{m}");
    // Another MNIST job is taken, and says at once what it waits for.
    let (status, body) =
        status_of(app.client.post(app.url("/jobs")).json(&json!({"model": "linear", "dataset": "mnist", "epochs": 1})))
            .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["waiting_for"].as_str().is_some_and(|w| w.contains("MNIST")), "{body}");
    let second = body["id"].as_str().unwrap().to_string();

    // An admin puts the files in place: the hold ends at once (the data directory changed).
    write_mnist(&store.join("mnist"), 64, 32);
    let done = app.wait_for(&mnist, 60, status_is("succeeded")).await;
    assert_eq!(done["epochs_done"], 1);
    app.wait_for(&second, 60, status_is("succeeded")).await;
    let (_, ds) = app.get("/datasets").await;
    let m = ds["datasets"].as_array().unwrap().iter().find(|d| d["name"] == "mnist").unwrap().clone();
    assert_eq!(m["state"], "present", "the old failure is not shown: {m}");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_import_trains_its_new_images_in_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let src = dir.path().join("src");
    write_images(&src, &["a", "b"], 12, (8, 8), 1, false);
    import(&options("swapped", &src, &data)).unwrap();
    let app = spawn_with(dir, |c| c.cpu_workers = Some(1)).await;
    let spec = json!({"dataset": "swapped", "model": "linear", "epochs": 1, "batch_size": 4});
    let first = app.submit(spec.clone()).await;
    app.wait_for(&first, 60, status_is("succeeded")).await;
    // The lab replaces it (same shape and classes, other images): its next job trains on them.
    let other = app.dir.path().join("src2");
    write_images(&other, &["a", "b"], 20, (8, 8), 2, false);
    let mut o = options("swapped", &other, &app.dir.path().join("data"));
    o.replace = true;
    import(&o).unwrap();
    let second = app.submit(spec).await;
    let done = app.wait_for(&second, 60, |j| j["status"] != "queued" && j["status"] != "running").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, m) = app.get(&format!("/jobs/{second}/metrics")).await;
    let last = m["epochs"][0].clone();
    assert!(last["samples_per_second"].is_number(), "{last}");
    // The first job's record still reads (its spec names the same shape).
    assert_eq!(app.job(&first).await["spec"]["dataset"], "swapped");
}
