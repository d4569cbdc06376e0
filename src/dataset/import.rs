//! `trainyard data import NAME DIR`: a lab's own folder of labelled images, checked and
//! converted into the store's format: `DATA_DIR/NAME/train.bin` and `test.bin` (CIFAR-10's
//! records: a label byte, then the image channel by channel) and `dataset.json`, its
//! description (shape, class names, split sizes, per-channel mean and standard deviation
//! of the training images, each file's SHA-256).
//!
//! The folder is `DIR/train/CLASS/*` and `DIR/test/CLASS/*`, or `DIR/CLASS/*` split by
//! `test_fraction` per class with a fixed seed. Images are PNG or JPEG (`image` decodes
//! them). Every problem is collected and reported by file name: a file that does not
//! decode, sizes that differ (unless `size` resizes all), too few classes.

use super::{Dataset, Format};
use image::imageops::FilterType;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The description's file name in a dataset's folder.
pub const DESCRIPTION: &str = "dataset.json";
/// The description's format tag.
const FORMAT_TAG: &str = "trainyard-records/1";
/// Most classes: a label is one byte.
pub const MAX_CLASSES: usize = 256;
/// Largest side of an imported image, in pixels.
pub const MAX_SIDE: u32 = 1024;
/// Largest split, in bytes of images.
pub const MAX_SPLIT_BYTES: u64 = 4 << 30;
/// At most this many problems are listed by name; the rest are counted.
const LISTED: usize = 20;

/// A dataset's description as `dataset.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub format: String,
    pub name: String,
    pub title: String,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: Vec<String>,
    pub train_images: u64,
    pub test_images: u64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// SHA-256 of `train.bin` and `test.bin`.
    pub sha256: BTreeMap<String, String>,
    /// The folder it was imported from, and when.
    pub source: String,
    pub imported_at: String,
}

const TRAIN_FILES: &[&str] = &["train.bin"];
const TEST_FILES: &[&str] = &["test.bin"];

impl Description {
    /// The files, checked: every number in range and consistent with the others.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT_TAG {
            return Err(format!("its format is {:?}, expected {FORMAT_TAG:?}", self.format));
        }
        check_dataset_name(&self.name)?;
        if ![1, 3].contains(&self.channels) {
            return Err(format!("channels is {}, expected 1 or 3", self.channels));
        }
        for (what, v) in [("height", self.height), ("width", self.width)] {
            if !(1..=i64::from(MAX_SIDE)).contains(&v) {
                return Err(format!("{what} is {v}, expected 1 to {MAX_SIDE}"));
            }
        }
        if !(2..=MAX_CLASSES).contains(&self.classes.len()) {
            return Err(format!("it has {} classes, expected 2 to {MAX_CLASSES}", self.classes.len()));
        }
        if self.train_images == 0 || self.test_images == 0 {
            return Err("a split is empty".into());
        }
        let per_channel = |v: &[f64]| v.len() == self.channels as usize && v.iter().all(|x| x.is_finite());
        if !per_channel(&self.mean) || !per_channel(&self.std) || self.std.iter().any(|&s| s <= 0.0) {
            return Err("mean and std need one finite value per channel (std above 0)".into());
        }
        for f in TRAIN_FILES.iter().chain(TEST_FILES) {
            if !self.sha256.get(*f).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(format!("it has no SHA-256 of {f}"));
            }
        }
        Ok(())
    }

    /// True when `d` is this description's dataset.
    fn is(&self, d: &Dataset) -> bool {
        d.name == self.name
            && d.title == self.title
            && (d.channels, d.height, d.width) == (self.channels, self.height, self.width)
            && d.classes.iter().copied().eq(self.classes.iter().map(String::as_str))
            && (d.train_images, d.test_images) == (self.train_images, self.test_images)
            && d.mean == self.mean.as_slice()
            && d.std == self.std.as_slice()
            && d.sha256.len() == self.sha256.len()
            && d.sha256.iter().all(|(f, h)| self.sha256.get(*f).is_some_and(|x| x == h))
    }

    /// The dataset, its text leaked to live as long as the process (`super::register`).
    fn leak(&self) -> Dataset {
        fn s(v: &str) -> &'static str {
            Box::leak(v.to_string().into_boxed_str())
        }
        let classes: Vec<&'static str> = self.classes.iter().map(|c| s(c)).collect();
        let sha: Vec<(&'static str, &'static str)> = self.sha256.iter().map(|(f, h)| (s(f), s(h))).collect();
        let name = s(&self.name);
        Dataset {
            name,
            title: s(&self.title),
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: Box::leak(classes.into_boxed_slice()),
            train_images: self.train_images,
            test_images: self.test_images,
            mean: Box::leak(self.mean.clone().into_boxed_slice()),
            std: Box::leak(self.std.clone().into_boxed_slice()),
            format: Format::Records { header: 1, label_at: 0 },
            train_files: TRAIN_FILES,
            test_files: TEST_FILES,
            dirs: Box::leak(vec![name].into_boxed_slice()),
            download: None,
            sha256: Box::leak(sha.into_boxed_slice()),
            where_to_get: s(&format!(
                "it was imported from {}; import it again with `trainyard data import {} {} --replace`",
                self.source, self.name, self.source
            )),
        }
    }
}

/// Registers `desc`'s dataset, unless the same is registered already (nothing leaks then).
pub fn register(desc: &Description) -> &'static Dataset {
    if let Some(known) = super::named(&desc.name).filter(|d| desc.is(d)) {
        return known;
    }
    super::register(desc.leak())
}

/// Reads and checks a `dataset.json`.
pub fn read_description(path: &Path) -> Result<Description, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let desc: Description =
        serde_json::from_str(&text).map_err(|e| format!("{} does not read as a description: {e}", path.display()))?;
    desc.check().map_err(|why| format!("{}: {why}", path.display()))?;
    let folder = path.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
    if folder != desc.name {
        return Err(format!("{} names the dataset {:?} but lies in folder {folder:?}", path.display(), desc.name));
    }
    Ok(desc)
}

/// A name a lab can give its dataset: 1 to 40 of a-z, 0-9, `-` and `_`, starting with a
/// letter or digit, and not a built-in dataset's name or folder.
pub fn check_dataset_name(name: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(format!(
            "the name {name:?} is not allowed: use 1 to 40 of a-z, 0-9, - and _, starting with a letter or digit"
        ));
    }
    let taken =
        super::BUILTIN.iter().find(|d| d.name == name || d.dirs.iter().any(|dir| dir.split('/').next() == Some(name)));
    if let Some(d) = taken {
        return Err(format!("the name {name:?} belongs to the built-in dataset {} ({})", d.name, d.title));
    }
    Ok(())
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub name: String,
    pub source: PathBuf,
    pub data_dir: PathBuf,
    /// Resize every image to (height, width).
    pub size: Option<(u32, u32)>,
    /// For a folder without train/ and test/: the share of each class held out for testing.
    pub test_fraction: f64,
    pub seed: u64,
    /// Replace a dataset of this name.
    pub replace: bool,
    /// Leave out files that do not decode (listed), instead of failing.
    pub skip_bad: bool,
    pub title: Option<String>,
}

/// What an import made.
#[derive(Debug)]
pub struct Imported {
    pub description: Description,
    pub folder: PathBuf,
    /// Files left out, with why (non-images always; undecodable ones with `skip_bad`).
    pub skipped: Vec<String>,
    /// Whether the folder was split by `test_fraction` (no train/ and test/).
    pub split_by_fraction: bool,
    /// How many images were resized.
    pub resized: usize,
}

impl Imported {
    /// What the command prints.
    pub fn summary(&self) -> String {
        let d = &self.description;
        let mut s = format!(
            "imported {:?} into {}: {} training and {} test images of {}×{}×{}, {} classes ({})",
            d.name,
            self.folder.display(),
            d.train_images,
            d.test_images,
            d.channels,
            d.height,
            d.width,
            d.classes.len(),
            d.classes.join(", ")
        );
        if self.split_by_fraction {
            let _ = write!(s, "; the test images were held out from each class");
        }
        if self.resized > 0 {
            let _ = write!(s, "; {} image(s) resized to {}×{}", self.resized, d.height, d.width);
        }
        let _ = write!(s, "\nmean {:?}, std {:?} (per channel, of the training images)", d.mean, d.std);
        if !self.skipped.is_empty() {
            let _ = write!(s, "\nleft out {} files:", self.skipped.len());
            for why in &self.skipped {
                let _ = write!(s, "\n  {why}");
            }
        }
        let _ = write!(s, "\njobs can now use \"dataset\": \"{}\"", d.name);
        s
    }
}

/// One image file found, with its class.
struct Found {
    path: PathBuf,
    /// Relative to the source, for messages.
    shown: String,
    class: usize,
    /// In the training split (else the test split).
    train: bool,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// The class folders of `dir`, sorted by name (as torchvision's `ImageFolder`).
fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() && !is_hidden(&path) {
            let name = e
                .file_name()
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the class folder {} has a name that is not UTF-8", path.display()))?;
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The image files of each class folder, sorted by name; other files go to `skipped`.
fn files_of(
    classes: &[(String, PathBuf)],
    index: &BTreeMap<String, usize>,
    source: &Path,
    train: bool,
    skipped: &mut Vec<String>,
) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    for (name, dir) in classes {
        let class = index[name];
        // N.B.: as torchvision's ImageFolder, the files of a class's subfolders are its too.
        let mut paths = Vec::new();
        let mut folders = vec![dir.clone()];
        while let Some(folder) = folders.pop() {
            let entries = std::fs::read_dir(&folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
            for e in entries.flatten() {
                let p = e.path();
                if is_hidden(&p) {
                    continue;
                }
                // N.B.: a linked folder is not followed (a link to a parent would never end).
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    folders.push(p);
                } else {
                    paths.push(p);
                }
            }
        }
        paths.sort();
        for path in paths {
            let shown = path.strip_prefix(source).unwrap_or(&path).display().to_string();
            if path.is_file() && is_image(&path) {
                out.push(Found { path, shown, class, train });
            } else {
                skipped.push(format!("{shown}: not a PNG or JPEG file"));
            }
        }
    }
    Ok(out)
}

fn reader(f: &Found) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, String> {
    let mut reader = image::ImageReader::open(&f.path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: cannot be read ({e})", f.shown))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    Ok(reader)
}

/// An image's size (height, width) and whether it is grey, from its header alone.
fn probe(f: &Found) -> Result<((u32, u32), bool), String> {
    use image::ImageDecoder;
    let decoder = reader(f)?.into_decoder().map_err(|e| format!("{}: is not a PNG or JPEG image ({e})", f.shown))?;
    let (w, h) = decoder.dimensions();
    Ok(((h, w), !decoder.color_type().has_color()))
}

fn decode(f: &Found) -> Result<image::DynamicImage, String> {
    reader(f)?.decode().map_err(|e| format!("{}: does not decode as an image ({e})", f.shown))
}

/// Imports `opts.source` into `opts.data_dir/opts.name`, or says every problem found.
pub fn import(opts: &ImportOptions) -> Result<Imported, String> {
    check_dataset_name(&opts.name)?;
    if !(opts.test_fraction > 0.0 && opts.test_fraction < 1.0) {
        return Err(format!("--test-fraction must be above 0 and below 1, got {}", opts.test_fraction));
    }
    if let Some((h, w)) = opts.size {
        if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
            return Err(format!("--size must be HxW with each side from 1 to {MAX_SIDE}, got {h}x{w}"));
        }
    }
    let folder = opts.data_dir.join(&opts.name);
    let src = &opts.source;
    if !src.is_dir() {
        return Err(format!("{} is not a folder", src.display()));
    }
    // The dataset a --replace replaces: only an import (a folder with its description), and
    // never the folder the images come from (nothing of the lab's own is deleted).
    let replaced = if folder.exists() {
        if !opts.replace {
            return Err(format!(
                "{} exists already; import under another name, or add --replace to replace it",
                folder.display()
            ));
        }
        let described = folder.join(DESCRIPTION);
        let old = read_description(&described).map_err(|why| {
            format!(
                "{} is not an imported dataset ({why}); --replace replaces only those: import under another name",
                folder.display()
            )
        })?;
        let (a, b) = (std::fs::canonicalize(src), std::fs::canonicalize(&folder));
        if let (Ok(a), Ok(b)) = (a, b) {
            if a.starts_with(&b) || b.starts_with(&a) {
                return Err(format!(
                    "the images in {} are inside the dataset {} would replace; move them elsewhere first",
                    src.display(),
                    folder.display()
                ));
            }
        }
        Some(old)
    } else {
        None
    };
    let mut skipped = Vec::new();
    let (train_dir, test_dir) = (src.join("train"), src.join("test"));
    if train_dir.is_dir() != test_dir.is_dir() {
        let (has, lacks) = if train_dir.is_dir() { ("train/", "test/") } else { ("test/", "train/") };
        return Err(format!(
            "{} has {has} but no {lacks}: give both (DIR/train/CLASS/* and DIR/test/CLASS/*), or neither \
             (DIR/CLASS/*, split by --test-fraction)",
            src.display()
        ));
    }
    let split_by_fraction = !(train_dir.is_dir() && test_dir.is_dir());
    let (classes, train, test) = if split_by_fraction {
        let classes = class_dirs(src)?;
        let index = classes.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let all = files_of(&classes, &index, src, true, &mut skipped)?;
        let (train, test) = split(all, classes.len(), opts.test_fraction, opts.seed);
        (classes.into_iter().map(|c| c.0).collect::<Vec<_>>(), train, test)
    } else {
        let classes = class_dirs(&train_dir)?;
        let index: BTreeMap<String, usize> = classes.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let test_classes = class_dirs(&test_dir)?;
        let unknown: Vec<&str> =
            test_classes.iter().map(|(n, _)| n.as_str()).filter(|n| !index.contains_key(*n)).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "test/ has classes that train/ lacks: {}; every test class needs training images",
                unknown.join(", ")
            ));
        }
        let train = files_of(&classes, &index, src, true, &mut skipped)?;
        let test = files_of(&test_classes, &index, src, false, &mut skipped)?;
        (classes.into_iter().map(|c| c.0).collect(), train, test)
    };
    let mut problems = Vec::new();
    if classes.len() < 2 {
        problems.push(format!(
            "found {} class folder(s) in {}; a dataset needs at least two (DIR/train/CLASS/* and DIR/test/CLASS/*, or DIR/CLASS/*)",
            classes.len(),
            if split_by_fraction { src.display().to_string() } else { train_dir.display().to_string() }
        ));
    }
    if classes.len() > MAX_CLASSES {
        problems.push(format!("found {} classes; at most {MAX_CLASSES} are allowed", classes.len()));
    }
    for (i, c) in classes.iter().enumerate() {
        if !train.iter().any(|f| f.class == i) {
            problems.push(format!("class {c} has no training images"));
        }
    }
    if test.is_empty() {
        problems.push(if split_by_fraction {
            "the test split is empty: each class needs at least two images to hold one out for testing \
             (or give DIR/train/CLASS/* and DIR/test/CLASS/*)"
                .into()
        } else {
            "the test split is empty: test/ has no images".into()
        });
    }
    if !problems.is_empty() {
        return Err(report(problems));
    }

    // First the headers (sizes and colour), then each image decoded and converted in turn:
    // never more than one decoded image in memory.
    let mut bad = Vec::new();
    let mut probed: Vec<(&Found, (u32, u32), bool)> = Vec::new();
    for f in train.iter().chain(&test) {
        match probe(f) {
            Ok((size, grey)) => probed.push((f, size, grey)),
            Err(why) => bad.push(why),
        }
    }
    let (height, width) = match opts.size {
        Some(s) => s,
        None => {
            let mut sizes: BTreeMap<(u32, u32), Vec<&str>> = BTreeMap::new();
            for (f, size, _) in &probed {
                sizes.entry(*size).or_default().push(&f.shown);
            }
            if sizes.len() > 1 {
                let mut lines: Vec<String> = sizes
                    .iter()
                    .map(|((h, w), files)| {
                        let some: Vec<&str> = files.iter().take(3).copied().collect();
                        format!("{h}x{w} (HxW): {} files, e.g. {}", files.len(), some.join(", "))
                    })
                    .collect();
                lines.insert(
                    0,
                    format!("the images have {} different sizes; add --size HxW to resize them all:", sizes.len()),
                );
                // The files that do not decode are problems too: all are said at once.
                lines.extend(bad);
                return Err(lines.join("\n  "));
            }
            let Some((&(h, w), _)) = sizes.iter().next() else {
                return Err(report(bad));
            };
            if h > MAX_SIDE || w > MAX_SIDE {
                return Err(format!(
                    "the images are {h}x{w}; at most {MAX_SIDE} a side: add --size HxW to make them smaller"
                ));
            }
            (h, w)
        }
    };
    let channels: u32 = if probed.iter().all(|p| p.2) { 1 } else { 3 };
    let image_bytes = u64::from(channels) * u64::from(height) * u64::from(width);
    let record = image_bytes + 1;
    for (what, is_train) in [("training", true), ("test", false)] {
        let n = probed.iter().filter(|p| p.0.train == is_train).count() as u64;
        if n.checked_mul(record).is_none_or(|b| b > MAX_SPLIT_BYTES) {
            return Err(format!(
                "the {what} split would take more than {} GiB; use --size to make the images smaller",
                MAX_SPLIT_BYTES >> 30
            ));
        }
    }

    // N.B.: the records are written in a seeded random order, as CIFAR's batches are mixed:
    // `train_limit` takes the first N training images, which in class order would be
    // the first classes only (seen: 10,000 of an imported CIFAR-10 were two classes).
    shuffle(&mut probed, opts.seed.wrapping_add(1));
    let mut resized = 0;
    let (mut n_train, mut n_test) = (0u64, 0u64);
    let mut sums = vec![0f64; channels as usize];
    let mut squares = vec![0f64; channels as usize];
    let reserve = |train: bool| probed.iter().filter(|p| p.0.train == train).count() * record as usize;
    let (mut train_bin, mut test_bin) = (Vec::with_capacity(reserve(true)), Vec::with_capacity(reserve(false)));
    for (f, _, _) in probed {
        let mut image = match decode(f) {
            Ok(image) => image,
            Err(why) => {
                bad.push(why);
                continue;
            }
        };
        if (image.height(), image.width()) != (height, width) {
            image = image.resize_exact(width, height, FilterType::Triangle);
            resized += 1;
        }
        let pixels: Vec<u8> = if channels == 1 { image.into_luma8().into_raw() } else { image.into_rgb8().into_raw() };
        let out = if f.train { &mut train_bin } else { &mut test_bin };
        *(if f.train { &mut n_train } else { &mut n_test }) += 1;
        out.push(f.class as u8);
        let plane = (height * width) as usize;
        // HWC (interleaved) to CHW (channel by channel), as the records hold images.
        for c in 0..channels as usize {
            for p in 0..plane {
                let v = pixels[p * channels as usize + c];
                out.push(v);
                if f.train {
                    let x = f64::from(v) / 255.0;
                    sums[c] += x;
                    squares[c] += x * x;
                }
            }
        }
    }
    if !bad.is_empty() && !opts.skip_bad {
        bad.push("nothing was imported; fix or remove these files, or add --skip-bad to leave them out".into());
        return Err(report(bad));
    }
    skipped.extend(bad);
    for (what, n) in [("training", n_train), ("test", n_test)] {
        if n == 0 {
            return Err(format!("no {what} image decoded"));
        }
    }
    // Files left out may have emptied a class.
    let mut seen = vec![false; classes.len()];
    for r in train_bin.chunks_exact(record as usize) {
        seen[usize::from(r[0])] = true;
    }
    let empty: Vec<&str> = classes.iter().zip(&seen).filter(|(_, s)| !**s).map(|(c, _)| c.as_str()).collect();
    if !empty.is_empty() {
        return Err(format!("with the files left out, these classes have no training image: {}", empty.join(", ")));
    }
    let count = n_train as f64 * f64::from(height * width);
    let mean: Vec<f64> = sums.iter().map(|s| round6(s / count)).collect();
    let std: Vec<f64> = squares
        .iter()
        .zip(&sums)
        .map(|(q, s)| {
            let m = s / count;
            // N.B.: a channel of one value has no spread; 1/255 keeps its normalised values
            // within ±255 instead of dividing by nothing.
            round6((q / count - m * m).max(0.0).sqrt()).max(round6(1.0 / 255.0))
        })
        .collect();

    let mut sha256 = BTreeMap::new();
    sha256.insert("train.bin".to_string(), hex::encode(Sha256::digest(&train_bin)));
    sha256.insert("test.bin".to_string(), hex::encode(Sha256::digest(&test_bin)));
    let description = Description {
        format: FORMAT_TAG.into(),
        name: opts.name.clone(),
        title: opts.title.clone().unwrap_or_else(|| opts.name.clone()),
        channels: channels.into(),
        height: height.into(),
        width: width.into(),
        classes,
        train_images: n_train,
        test_images: n_test,
        mean,
        std,
        sha256,
        source: std::fs::canonicalize(src).unwrap_or(src.clone()).display().to_string(),
        imported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    description.check()?;
    if let Some(old) = replaced.filter(|old| !same_shape(old, &description)) {
        // N.B.: queued and finished jobs name the dataset; their specs were planned for its
        // images and classes, and must still read.
        return Err(format!(
            "{} holds {}×{}×{} images of {} classes ({}); this folder makes {}×{}×{} images of {} classes ({}): \
             --replace keeps the shape and classes (its jobs were planned for them); import under a new name instead",
            opts.name,
            old.channels,
            old.height,
            old.width,
            old.classes.len(),
            old.classes.join(", "),
            description.channels,
            description.height,
            description.width,
            description.classes.len(),
            description.classes.join(", ")
        ));
    }
    write(&opts.data_dir, &folder, &description, &train_bin, &test_bin)
        .map_err(|e| format!("writing {}: {e}", folder.display()))?;
    register(&description);
    Ok(Imported { description, folder, skipped, split_by_fraction, resized })
}

/// The same images and classes (what a job's plan depends on).
fn same_shape(a: &Description, b: &Description) -> bool {
    (a.channels, a.height, a.width) == (b.channels, b.height, b.width) && a.classes == b.classes
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Lists problems, the first `LISTED` by name.
fn report(problems: Vec<String>) -> String {
    let mut s = format!("{} problem(s):", problems.len());
    for p in problems.iter().take(LISTED) {
        let _ = write!(s, "\n  {p}");
    }
    if problems.len() > LISTED {
        let _ = write!(s, "\n  … and {} more", problems.len() - LISTED);
    }
    s
}

/// Holds out `fraction` of each class (at least one image of a class with two or more),
/// chosen by a seeded shuffle of the class's files in name order.
fn split(all: Vec<Found>, classes: usize, fraction: f64, seed: u64) -> (Vec<Found>, Vec<Found>) {
    let mut by_class: Vec<Vec<Found>> = (0..classes).map(|_| Vec::new()).collect();
    for f in all {
        by_class[f.class].push(f);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut files in by_class {
        shuffle_with(&mut files, &mut rng);
        let n = files.len();
        let held = if n >= 2 { ((n as f64 * fraction).round() as usize).clamp(1, n - 1) } else { 0 };
        let rest = files.split_off(held);
        test.extend(files.into_iter().map(|f| Found { train: false, ..f }));
        train.extend(rest);
    }
    (train, test)
}

/// Fisher–Yates, from a seeded stream.
fn shuffle_with<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    shuffle_with(items, &mut ChaCha8Rng::seed_from_u64(seed));
}

/// Writes the dataset into a temporary folder beside `folder`, then renames it into place
/// (a crash leaves the old dataset or the new one, never half of one).
fn write(data_dir: &Path, folder: &Path, desc: &Description, train: &[u8], test: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join(format!(".{}.importing", desc.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    std::fs::write(tmp.join("train.bin"), train)?;
    std::fs::write(tmp.join("test.bin"), test)?;
    let json = serde_json::to_string_pretty(desc).map_err(std::io::Error::other)?;
    std::fs::write(tmp.join(DESCRIPTION), json + "\n")?;
    if folder.exists() {
        let old = data_dir.join(format!(".{}.replaced", desc.name));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(folder, &old)?;
        std::fs::rename(&tmp, folder)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, folder)?;
    }
    Ok(())
}

/// Parses `--size HxW` (or `H×W`, `HXW`).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parts: Vec<&str> = s.split(['x', 'X', '×']).collect();
    match parts.as_slice() {
        [h, w] => match (h.trim().parse::<u32>(), w.trim().parse::<u32>()) {
            (Ok(h), Ok(w)) if (1..=MAX_SIDE).contains(&h) && (1..=MAX_SIDE).contains(&w) => Ok((h, w)),
            _ => Err(format!("expected HxW with each side from 1 to {MAX_SIDE}, like 32x32; got {s:?}")),
        },
        _ => Err(format!("expected HxW, like 32x32; got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_are_checked() {
        assert!(check_dataset_name("flowers_2").is_ok());
        assert!(check_dataset_name("Flowers").unwrap_err().contains("a-z"));
        assert!(check_dataset_name("../x").is_err());
        assert!(check_dataset_name("").is_err());
        assert!(check_dataset_name("mnist").unwrap_err().contains("built-in"));
        assert!(check_dataset_name("MNIST").is_err());
        assert!(check_dataset_name("cifar-10-batches-bin").unwrap_err().contains("built-in"));
        assert_eq!(parse_size("28x28"), Ok((28, 28)));
        assert_eq!(parse_size("24×32"), Ok((24, 32)));
        assert!(parse_size("0x4").is_err() && parse_size("4").is_err() && parse_size("2000x2").is_err());
    }
}
