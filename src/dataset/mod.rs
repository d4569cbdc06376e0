//! The datasets a spec can name, as plain data: the images' shape, the classes and their
//! names, the split sizes, how images are normalised and which files hold them. The spec's
//! bounds, the network plans, augmentation, the engine and the worker's data cache read a
//! `Dataset` instead of CIFAR-10's numbers; adding a dataset is a constant here and, for a
//! new file format, its reader in `train::data`.

//! The datasets a spec can name, as plain data: the images' shape, the classes and their
//! names, the split sizes, how images are normalised, which files hold them and in which
//! format, and where in the data directory they live. The spec's bounds, the network plans,
//! augmentation, the engine and the worker's data cache read a `Dataset` instead of one
//! dataset's numbers.
//!
//! - this file: the built-in datasets (CIFAR-10, CIFAR-100 with fine and coarse labels,
//!   MNIST, Fashion-MNIST), the registry of a lab's own (`register`, `scan`), and where a
//!   dataset's files are (`locate`, `check_present`);
//! - `formats`: reading each file format into raw bytes and labels;
//! - `import`: `trainyard data import`, a folder of images into the store's format.

pub mod formats;
pub mod import;

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

/// How a dataset's files are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// CIFAR's binary version: records of `header` label bytes, then the image's bytes
    /// channel by channel; the label is byte `label_at` of the header. CIFAR-10 and the
    /// store's own format (`import`) have one label byte, CIFAR-100 two (coarse, fine).
    Records { header: usize, label_at: usize },
    /// IDX (MNIST's format): per split an images file and a labels file, in that order in
    /// `train_files`/`test_files`, each plain or gzipped (`NAME` or `NAME.gz`).
    Idx,
}

/// A download a dataset can be fetched from: each file with its published MD5.
#[derive(Debug, PartialEq)]
pub struct Download {
    /// What is fetched: (URL, MD5 of what the URL serves).
    pub files: &'static [(&'static str, &'static str)],
    /// For a tar.gz archive, the folder inside it that holds the dataset's files; `None` when
    /// the URLs are the dataset's files themselves.
    pub archive_folder: Option<&'static str>,
}

/// One dataset, described before anything is read.
#[derive(Debug, PartialEq)]
pub struct Dataset {
    /// The spec's value for it (`"dataset": "cifar10"`).
    pub name: &'static str,
    /// What people call it, in messages.
    pub title: &'static str,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    /// Class names, by label.
    pub classes: &'static [&'static str],
    /// Images in the full training split (the most `train_limit` can take).
    pub train_images: u64,
    pub test_images: u64,
    /// Per channel, as torchvision's `Normalize(mean, std)` after `ToTensor()` (x / 255).
    pub mean: &'static [f64],
    pub std: &'static [f64],
    pub format: Format,
    /// The files of each split, in the order they are read.
    pub train_files: &'static [&'static str],
    pub test_files: &'static [&'static str],
    /// The folders of the data directory that may hold the files, in the order they are
    /// looked at; the first is where a fetch or an import puts them, and `""` is the data
    /// directory itself (CIFAR-10's files there are today's layout, and keep working).
    pub dirs: &'static [&'static str],
    /// Where it can be fetched from, when there is a network.
    pub download: Option<Download>,
    /// SHA-256 of each file as imported (a lab's own datasets), checked when it is loaded.
    pub sha256: &'static [(&'static str, &'static str)],
    /// Where an admin gets the files, for the message that says they are missing.
    pub where_to_get: &'static str,
}

impl Dataset {
    /// Values per image: channels × height × width.
    pub fn image_numel(&self) -> i64 {
        self.channels * self.height * self.width
    }

    pub fn num_classes(&self) -> i64 {
        self.classes.len() as i64
    }

    /// The accuracy of guessing (1 / classes): the figures' dotted line, the report's "at chance".
    pub fn chance(&self) -> f64 {
        1.0 / self.num_classes().max(1) as f64
    }

    /// Built in (not a lab's own import).
    pub fn is_builtin(&self) -> bool {
        BUILTIN.iter().any(|d| std::ptr::eq(*d, self))
    }

    /// Its shape in words: `3×32×32`.
    pub fn shape_text(&self) -> String {
        format!("{}×{}×{}", self.channels, self.height, self.width)
    }

    /// Every file the dataset reads.
    pub fn files(&self) -> impl Iterator<Item = &'static str> {
        self.train_files.iter().chain(self.test_files).copied()
    }

    /// The folder of `data_dir` that holds the files: the first of `dirs` that holds any of
    /// them, or, when none does, the first of `dirs` (where they belong).
    pub fn locate(&self, data_dir: &Path) -> PathBuf {
        let holds = |dir: &Path| self.files().any(|f| formats::file_in(self, dir, f).is_some());
        self.dirs
            .iter()
            .map(|d| if d.is_empty() { data_dir.to_path_buf() } else { data_dir.join(d) })
            .find(|dir| holds(dir))
            .unwrap_or_else(|| data_dir.join(self.dirs[0]))
    }

    /// Where the files go, named for a message: `DATA_DIR/mnist`.
    pub fn home(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(self.dirs[0])
    }
}

const CIFAR10_CLASSES: &[&str] =
    &["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-10 in its binary version, normalised as the PyTorch tutorial does ((x − 0.5) / 0.5).
pub const CIFAR10: Dataset = Dataset {
    name: "cifar10",
    title: "CIFAR-10",
    channels: 3,
    height: 32,
    width: 32,
    classes: CIFAR10_CLASSES,
    train_images: 50_000,
    test_images: 10_000,
    mean: &[0.5, 0.5, 0.5],
    std: &[0.5, 0.5, 0.5],
    format: Format::Records { header: 1, label_at: 0 },
    train_files: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test_files: &["test_batch.bin"],
    dirs: &["cifar10", "cifar-10-batches-bin", ""],
    download: Some(Download {
        files: &[(crate::fetch::OFFICIAL_URL, crate::fetch::OFFICIAL_MD5)],
        archive_folder: Some("cifar-10-batches-bin"),
    }),
    sha256: &[],
    where_to_get: "get the CIFAR-10 binary version (cifar-10-binary.tar.gz) from \
        https://www.cs.toronto.edu/~kriz/cifar.html and unpack its cifar-10-batches-bin files into DATA_DIR/cifar10",
};

const CIFAR100_FINE: &[&str] = &[
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

const CIFAR100_COARSE: &[&str] = &[
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

const CIFAR100_WHERE: &str = "get the CIFAR-100 binary version (cifar-100-binary.tar.gz) from \
    https://www.cs.toronto.edu/~kriz/cifar.html and unpack its train.bin and test.bin into DATA_DIR/cifar100";

/// CIFAR-100's binary version with its 100 fine labels, normalised by its training set's
/// per-channel mean and standard deviation.
pub const CIFAR100: Dataset = Dataset {
    name: "cifar100",
    title: "CIFAR-100",
    classes: CIFAR100_FINE,
    mean: &[0.5071, 0.4865, 0.4409],
    std: &[0.2673, 0.2564, 0.2762],
    format: Format::Records { header: 2, label_at: 1 },
    train_files: &["train.bin"],
    test_files: &["test.bin"],
    dirs: &["cifar100", "cifar-100-binary"],
    download: Some(Download {
        files: &[("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")],
        archive_folder: Some("cifar-100-binary"),
    }),
    where_to_get: CIFAR100_WHERE,
    ..CIFAR10
};

/// The same files with CIFAR-100's 20 coarse labels (superclasses).
pub const CIFAR100_COARSE_LABELS: Dataset = Dataset {
    name: "cifar100-coarse",
    title: "CIFAR-100 (coarse labels)",
    classes: CIFAR100_COARSE,
    format: Format::Records { header: 2, label_at: 0 },
    ..CIFAR100
};

const MNIST_FILES_TRAIN: &[&str] = &["train-images-idx3-ubyte", "train-labels-idx1-ubyte"];
const MNIST_FILES_TEST: &[&str] = &["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// MNIST's handwritten digits, normalised as PyTorch's MNIST example does (0.1307, 0.3081).
pub const MNIST: Dataset = Dataset {
    name: "mnist",
    title: "MNIST",
    channels: 1,
    height: 28,
    width: 28,
    classes: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    train_images: 60_000,
    test_images: 10_000,
    mean: &[0.1307],
    std: &[0.3081],
    format: Format::Idx,
    train_files: MNIST_FILES_TRAIN,
    test_files: MNIST_FILES_TEST,
    dirs: &["mnist", "MNIST/raw"],
    download: Some(Download {
        files: &[
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
            ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ],
        archive_folder: None,
    }),
    sha256: &[],
    where_to_get: "put the four MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
        t10k-labels-idx1-ubyte, gzipped or not; from https://yann.lecun.com/exdb/mnist/ or torchvision's mirror) into DATA_DIR/mnist",
};

/// Zalando's Fashion-MNIST: MNIST's format and shape, ten kinds of clothing; normalised by
/// its training set's mean and standard deviation.
pub const FASHION_MNIST: Dataset = Dataset {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    classes: &["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    mean: &[0.2860],
    std: &[0.3530],
    dirs: &["fashion-mnist", "FashionMNIST/raw"],
    download: Some(Download {
        files: &[
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ],
        archive_folder: None,
    }),
    where_to_get: "put the four Fashion-MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte, \
        t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not; from https://github.com/zalandoresearch/fashion-mnist) \
        into DATA_DIR/fashion-mnist",
    ..MNIST
};

/// The built-in datasets, the default first.
pub const BUILTIN: &[&Dataset] = &[&CIFAR10, &CIFAR100, &CIFAR100_COARSE_LABELS, &MNIST, &FASHION_MNIST];

/// The built-in datasets' names, in `BUILTIN`'s order.
pub const BUILTIN_NAMES: &[&str] = &["cifar10", "cifar100", "cifar100-coarse", "mnist", "fashion-mnist"];

/// The default dataset.
pub const DEFAULT: &Dataset = &CIFAR10;

/// A lab's own datasets this process knows of (`register`, `scan`).
///
/// N.B.: a registered description is leaked, so a spec's `&'static Dataset` stays valid
/// for the process's life: one small struct per import (re-imports replace the entry, and
/// the old description stays readable for jobs that hold it).
static IMPORTED: RwLock<Vec<&'static Dataset>> = RwLock::new(Vec::new());

/// Makes an imported dataset nameable; a description of the same name and contents is
/// kept, one of other contents replaces it.
pub fn register(d: Dataset) -> &'static Dataset {
    let mut all = IMPORTED.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = all.iter().find(|k| k.name == d.name && **k == &d) {
        return known;
    }
    let leaked: &'static Dataset = Box::leak(Box::new(d));
    all.retain(|k| k.name != leaked.name);
    all.push(leaked);
    leaked
}

/// Every dataset this process can name: the built-in ones, then the imports by name.
pub fn all() -> Vec<&'static Dataset> {
    let mut imported = IMPORTED.read().unwrap_or_else(PoisonError::into_inner).clone();
    imported.sort_by_key(|d| d.name);
    BUILTIN.iter().copied().chain(imported).collect()
}

/// The dataset a spec names.
pub fn named(name: &str) -> Option<&'static Dataset> {
    BUILTIN
        .iter()
        .copied()
        .find(|d| d.name == name)
        .or_else(|| IMPORTED.read().unwrap_or_else(PoisonError::into_inner).iter().copied().find(|d| d.name == name))
}

/// Reads the descriptions of the data directory's imports (`DATA_DIR/NAME/dataset.json`)
/// and registers each; returns the folders whose description does not read, with why.
pub fn scan(data_dir: &Path) -> Vec<(PathBuf, String)> {
    scan_store(data_dir).1
}

/// As `scan`, with the datasets of this store: the built-in ones, then its imports by name.
///
/// N.B.: the registry is the process's (a spec names any dataset it knows); what one
/// server lists and offers is its own store's (tests run many servers in one process).
pub fn scan_store(data_dir: &Path) -> (Vec<&'static Dataset>, Vec<(PathBuf, String)>) {
    let (mut found, mut bad) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(data_dir) else { return (BUILTIN.to_vec(), bad) };
    for entry in entries.flatten() {
        // An import under way (`.NAME.importing`) or one just replaced is not a dataset.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file = entry.path().join(import::DESCRIPTION);
        if !file.is_file() {
            continue;
        }
        match import::read_description(&file) {
            Ok(d) => found.push(import::register(&d)),
            Err(why) => bad.push((entry.path(), why)),
        }
    }
    found.sort_by_key(|d| d.name);
    (BUILTIN.iter().copied().chain(found).collect(), bad)
}

/// The data directory's state, cheaply: its entries' names, sizes and modification times
/// one level down (a new import, a fetched file or an admin's fix changes it).
pub fn fingerprint(data_dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let look = |dir: &Path, h: &mut std::collections::hash_map::DefaultHasher| {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut subdirs = Vec::new();
        let mut seen: Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>, bool)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((e.file_name(), m.len(), m.modified().ok(), m.is_dir()))
            })
            .collect();
        seen.sort();
        for (name, len, modified, is_dir) in seen {
            (&name, len, modified).hash(h);
            if is_dir {
                subdirs.push(dir.join(name));
            }
        }
        subdirs
    };
    for sub in look(data_dir, &mut h) {
        look(&sub, &mut h);
    }
    h.finish()
}

/// Whether `data_dir` holds `data`'s files, without reading them beyond an IDX header
/// (readiness and `GET /datasets` ask this often; a label out of range or a wrong checksum
/// shows only on loading).
pub fn check_present(data: &'static Dataset, data_dir: &Path) -> Result<(), formats::DataError> {
    formats::check_files(data, &data.locate(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_dataset_in_order_and_each_has_a_shape_per_channel() {
        for d in BUILTIN {
            assert_eq!(named(d.name), Some(*d));
            assert_eq!((d.mean.len(), d.std.len()), (d.channels as usize, d.channels as usize), "{}", d.name);
            assert!(d.std.iter().all(|&s| s > 0.0), "{}", d.name);
        }
        assert_eq!(BUILTIN_NAMES, BUILTIN.iter().map(|d| d.name).collect::<Vec<_>>());
        assert_eq!(CIFAR10.image_numel(), 3 * 32 * 32);
        assert_eq!((CIFAR100.num_classes(), CIFAR100_COARSE_LABELS.num_classes()), (100, 20));
        assert_eq!(MNIST.image_numel(), 28 * 28);
        assert_eq!(named("imagenet"), None);
    }
}
