//! `trainyard data fetch` against a local stand-in for the dataset's home page.

use md5::{Digest, Md5};
use trainyard::dataset::CIFAR10;
use trainyard::fetch::{self, Source};
use trainyard::train::data::{self, Data};

/// A cifar-10-binary.tar.gz of the synthetic data, with one file that must not be unpacked.
fn archive() -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    data::write_synthetic(src.path(), 20, 20, 4).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for f in CIFAR10.train_files.iter().chain(CIFAR10.test_files) {
        tar.append_path_with_name(src.path().join(f), format!("cifar-10-batches-bin/{f}")).unwrap();
    }
    let extra = b"not part of the dataset";
    let mut header = tar::Header::new_gnu();
    header.set_size(extra.len() as u64);
    header.set_cksum();
    tar.append_data(&mut header, "cifar-10-batches-bin/readme.html", &extra[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

async fn serve(bytes: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app =
        axum::Router::new().route("/cifar-10-binary.tar.gz", axum::routing::get(move || async move { bytes.clone() }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/cifar-10-binary.tar.gz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_checks_the_md5_and_unpacks_only_the_dataset_files() {
    let bytes = archive();
    let md5 = hex::encode(Md5::digest(&bytes));
    let url = serve(bytes).await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cifar-10-batches-bin");

    let bad = Source { url: url.clone(), md5: "0".repeat(32), mirror: None };
    let t = target.clone();
    let err = tokio::task::spawn_blocking(move || fetch::fetch(&bad, &t)).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("MD5") && err.to_string().contains("expected 0000"), "{err}");
    assert!(fetch::is_empty_dir(&target), "nothing is unpacked from a damaged download");

    let good = Source { url, md5, mirror: None };
    let t = target.clone();
    tokio::task::spawn_blocking(move || fetch::fetch(&good, &t)).await.unwrap().unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin"
        ]
    );
    let loaded = Data::load(&CIFAR10, &target, tch::Device::Cpu).unwrap();
    assert_eq!((loaded.train.len(), loaded.test.len()), (100, 20));
}

#[test]
fn fetch_without_network_says_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let src = Source {
        url: "http://127.0.0.1:9/cifar-10-binary.tar.gz".into(),
        md5: fetch::OFFICIAL_MD5.into(),
        mirror: None,
    };
    let err = fetch::fetch(&src, dir.path()).unwrap_err();
    assert!(format!("{err:#}").contains("downloading http://127.0.0.1:9/cifar-10-binary.tar.gz"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_serves_each_dataset_from_its_folder_and_its_published_md5_is_checked() {
    // A mirror holding an MNIST file that is not the published one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(uri.path().to_string());
            b"not the published file".to_vec()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let source = Source {
        url: fetch::OFFICIAL_URL.into(),
        md5: fetch::OFFICIAL_MD5.into(),
        mirror: Some(format!("http://{addr}/")),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let err =
        tokio::task::spawn_blocking(move || fetch::fetch_dataset(&trainyard::dataset::FASHION_MNIST, &d, &source))
            .await
            .unwrap()
            .unwrap_err();
    let text = fetch::describe(&err);
    assert!(text.contains("expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d") && text.contains("Fashion-MNIST"), "{text}");
    assert_eq!(*asked.lock().unwrap(), ["/fashion-mnist/train-images-idx3-ubyte.gz"]);
    assert!(!dir.path().join("fashion-mnist").exists(), "a failed fetch leaves the folder as it was");
}
