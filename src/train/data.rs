//! CIFAR-10 in its binary format, loaded once onto the training device as uint8, and the
//! batch source that turns it into normalised mini-batches in a seeded order.

use super::augment::{self, AugmentParams};
use super::rng::EpochRng;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const CLASSES: i64 = 10;
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
pub const WHERE_TO_GET: &str = "get the CIFAR-10 binary version (cifar-10-binary.tar.gz) from \
https://www.cs.toronto.edu/~kriz/cifar.html and unpack its cifar-10-batches-bin files there";

/// What is wrong with a data directory; each names the file and the directory.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file the dataset needs is not there.
    #[error("CIFAR-10 file {file} is missing from {dir}; {WHERE_TO_GET}", dir = .dir.display())]
    Missing { file: String, dir: PathBuf },
    /// The file's size is not a whole number of 3,073-byte records, or it holds none.
    #[error("CIFAR-10 file {file} in {dir} is {size} bytes, not a whole number of {RECORD_BYTES}-byte records (it may be truncated); {WHERE_TO_GET}", dir = .dir.display())]
    Truncated { file: String, dir: PathBuf, size: u64 },
    /// A record's label byte is not a class 0..=9.
    #[error("CIFAR-10 file {file} in {dir} has label {label} in record {record}; labels are 0 to 9, so this is not a CIFAR-10 binary file", dir = .dir.display())]
    BadLabel { file: String, dir: PathBuf, record: usize, label: u8 },
    /// The file exists but could not be read.
    #[error("could not read CIFAR-10 file {file} in {dir}: {source}", dir = .dir.display())]
    Io { file: String, dir: PathBuf, source: std::io::Error },
}

/// One split's raw images ([N, 3, 32, 32] uint8) and labels ([N] int64), resident on a
/// device, that can only be read.
///
/// N.B.: `tch::Tensor` is `Send` but not `Sync`, because a handle lets its holder change
/// the storage. A `Split` never gives one out: its tensors are private, and every method
/// returns a tensor of new storage (`index_select` allocates, and so does turning uint8
/// images into floats, which is why `new` insists on uint8). So nothing can write a split
/// after it is made, and reading one from several threads at once is what libtorch allows:
/// every worker of a device trains on one copy of the data.
pub struct Split {
    images: Tensor,
    labels: Tensor,
}

// SAFETY: see the N.B. above; the only `&self` methods read.
unsafe impl Sync for Split {}

impl Split {
    /// A split of `images` [N, 3, 32, 32] (uint8) and `labels` [N] (int64).
    pub fn new(images: Tensor, labels: Tensor) -> Split {
        assert_eq!(images.kind(), Kind::Uint8, "a split holds raw uint8 images");
        assert_eq!(images.size()[0], labels.size()[0], "one label per image");
        Split { images, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.images.device()
    }

    /// The images at `rows` ([K] int64), normalised: [K, 3, 32, 32] float.
    pub fn images_at(&self, rows: &Tensor) -> Tensor {
        normalise(&self.images.index_select(0, rows))
    }

    /// `len` images from `start`, normalised.
    pub fn images_from(&self, start: i64, len: i64) -> Tensor {
        normalise(&self.images.narrow(0, start, len))
    }

    /// The labels at `rows`.
    pub fn labels_at(&self, rows: &Tensor) -> Tensor {
        self.labels.index_select(0, rows)
    }

    /// `len` labels from `start`.
    pub fn labels_from(&self, start: i64, len: i64) -> Tensor {
        self.labels.narrow(0, start, len).copy()
    }

    /// A copy of the raw images (uint8), for a look at the data as it was read.
    pub fn raw_images(&self) -> Tensor {
        self.images.copy()
    }

    /// A copy of the labels.
    pub fn labels(&self) -> Tensor {
        self.labels.copy()
    }

    /// A copy on `device`.
    pub fn to_device(&self, device: Device) -> Split {
        Split { images: self.images.to_device(device), labels: self.labels.to_device(device) }
    }
}

/// The dataset, resident on one device.
pub struct Cifar10 {
    pub train: Split,
    pub test: Split,
    pub device: Device,
}

impl Cifar10 {
    /// Loads `dir` (data_batch_1..5.bin and test_batch.bin) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Cifar10, DataError> {
        let train = read_split(dir, &TRAIN_FILES)?;
        let test = read_split(dir, &[TEST_FILE])?;
        Ok(Cifar10 { train: train.to_device(device), test: test.to_device(device), device })
    }
}

fn read_split(dir: &Path, files: &[&str]) -> Result<Split, DataError> {
    let mut images: Vec<u8> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    for file in files {
        let path = dir.join(file);
        let err_ctx = || (file.to_string(), dir.to_path_buf());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (file, dir) = err_ctx();
                return Err(DataError::Missing { file, dir });
            }
            Err(source) => {
                let (file, dir) = err_ctx();
                return Err(DataError::Io { file, dir, source });
            }
        };
        if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
            let (file, dir) = err_ctx();
            return Err(DataError::Truncated { file, dir, size: bytes.len() as u64 });
        }
        images.reserve(bytes.len());
        for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = chunk[0];
            if i64::from(label) >= CLASSES {
                let (file, dir) = err_ctx();
                return Err(DataError::BadLabel { file, dir, record, label });
            }
            labels.push(label.into());
            images.extend_from_slice(&chunk[1..]);
        }
    }
    let n = labels.len() as i64;
    Ok(Split::new(Tensor::from_slice(&images).view([n, 3, 32, 32]), Tensor::from_slice(&labels)))
}

/// Turns uint8 images into the tutorial's normalisation, (x/255 - 0.5)/0.5, in float.
///
/// N.B.: the float tensor is new storage only because the input is uint8 (`to_kind` of a
/// tensor already of that kind returns the same storage, which the in-place steps would
/// then change): `Split::new` holds its images to uint8.
fn normalise(images_u8: &Tensor) -> Tensor {
    debug_assert_eq!(images_u8.kind(), Kind::Uint8);
    images_u8.to_kind(Kind::Float).g_mul_scalar_(2.0 / 255.0).g_sub_scalar_(1.0)
}

/// One mini-batch for every member of a group, normalised (and augmented for the members
/// that ask), on the training device.
pub struct Batch {
    /// Member after member: [G·len, 3, 32, 32].
    pub images: Tensor,
    /// [G·len], member after member.
    pub labels: Tensor,
    /// Where the batch starts in the epoch's order (see `GroupBatches::labels_in_order`).
    pub start: usize,
    pub len: usize,
}

/// One member's share of an epoch: the epoch's random stream and its augmentation.
pub struct MemberEpoch {
    pub rng: EpochRng,
    pub augment: Option<AugmentParams>,
}

/// Yields one epoch's mini-batches of the training split for each member of a group, each
/// member in its own seeded order.
///
/// N.B.: everything random here (the order, the crops, the flips) comes from each member's
/// `EpochRng`, drawn in the same sequence whatever the group, so a member's epoch is a pure
/// function of its (seed, epoch): alone, in any group, or resumed.
pub struct GroupBatches<'a> {
    split: &'a Split,
    /// [G, n]: each member's order of the first n images.
    orders: Tensor,
    labels: Tensor,
    n: usize,
    batch_size: usize,
    next: usize,
    members: Vec<MemberEpoch>,
}

impl<'a> GroupBatches<'a> {
    pub fn new(split: &'a Split, limit: usize, batch_size: usize, mut members: Vec<MemberEpoch>) -> Self {
        let n = limit.min(split.len());
        let perms: Vec<i64> = members.iter_mut().flat_map(|m| m.rng.permutation(n)).collect();
        let g = members.len() as i64;
        let orders = Tensor::from_slice(&perms).to_device(split.device()).view([g, n as i64]);
        let labels = split.labels_at(&orders.view([-1])).view([g, n as i64]);
        GroupBatches { split, orders, labels, n, batch_size, next: 0, members }
    }

    pub fn batches(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    pub fn samples(&self) -> usize {
        self.n
    }

    /// Each member's labels in the order its batches yield them: [G, n].
    pub fn labels_in_order(&self) -> Tensor {
        self.labels.shallow_clone()
    }

    /// Keeps only the members at `keep` (ascending), for the rest of the epoch.
    pub fn retain(&mut self, keep: &[usize]) {
        let idx =
            Tensor::from_slice(&keep.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(self.orders.device());
        self.orders = self.orders.index_select(0, &idx);
        self.labels = self.labels.index_select(0, &idx);
        let mut i = 0;
        self.members.retain(|_| {
            i += 1;
            keep.contains(&(i - 1))
        });
    }
}

impl Iterator for GroupBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.n {
            return None;
        }
        let (start, len) = (self.next, self.batch_size.min(self.n - self.next));
        let idx = self.orders.narrow(1, start as i64, len as i64).reshape([-1]);
        self.next += len;
        let mut images = self.split.images_at(&idx);
        let mut plans = Vec::new();
        let mut rows = Vec::new();
        for (g, m) in self.members.iter_mut().enumerate() {
            if let Some(params) = &m.augment {
                plans.extend(params.sample(&mut m.rng, len));
                rows.extend((g * len) as i64..((g + 1) * len) as i64);
            }
        }
        if rows.len() == images.size()[0] as usize {
            images = augment::apply(&images, &plans);
        } else if !rows.is_empty() {
            let rows = Tensor::from_slice(&rows).to_device(images.device());
            let augmented = augment::apply(&images.index_select(0, &rows), &plans);
            let _ = images.index_copy_(0, &rows, &augmented);
        }
        let labels = self.labels.narrow(1, start as i64, len as i64).reshape([-1]);
        Some(Batch { images, labels, start, len })
    }
}

/// Writes a small learnable dataset in the CIFAR-10 binary format: each class has its own
/// colour and stripe direction, plus noise. For tests and the demo; the real data never
/// comes from here.
pub fn write_synthetic(dir: &Path, train_per_file: usize, test: usize, seed: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = EpochRng::new(seed, 0);
    let mut write = |name: &str, count: usize| -> std::io::Result<()> {
        let mut out = Vec::with_capacity(count * RECORD_BYTES);
        for i in 0..count {
            let class = ((i + rng.below(3) as usize) % CLASSES as usize) as u8;
            out.push(class);
            for c in 0..3usize {
                // A colour per class and channel, and a stripe pattern whose period depends on the class.
                let base = 40.0 + 170.0 * (((class as usize * 7 + c * 3) % 10) as f32 / 9.0);
                for y in 0..32usize {
                    for x in 0..32usize {
                        let stripe = if class.is_multiple_of(2) { x } else { y };
                        let wave = if (stripe / (2 + class as usize / 2)).is_multiple_of(2) { 25.0 } else { -25.0 };
                        let noise = (rng.uniform() - 0.5) * 60.0;
                        out.push((base + wave + noise).clamp(0.0, 255.0) as u8);
                    }
                }
            }
        }
        std::fs::write(dir.join(name), out)
    };
    for file in TRAIN_FILES {
        write(file, train_per_file)?;
    }
    write(TEST_FILE, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "raw uint8 images")]
    fn a_split_refuses_float_images_whose_normalising_would_write_them() {
        let images = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        Split::new(images, Tensor::zeros([2], (Kind::Int64, Device::Cpu)));
    }

    #[test]
    fn reading_a_split_leaves_it_as_it_was() {
        let images = Tensor::from_slice(&[7u8; 2 * IMAGE_BYTES]).view([2, 3, 32, 32]);
        let split = Split::new(images, Tensor::from_slice(&[1i64, 2]));
        let rows = Tensor::from_slice(&[1i64]);
        for mut t in [split.images_at(&rows), split.images_from(0, 2)] {
            let _ = t.fill_(0.0);
        }
        let _ = split.labels_from(0, 2).fill_(0);
        assert_eq!(split.raw_images().int64_value(&[1, 2, 3, 4]), 7);
        assert_eq!(split.labels().int64_value(&[1]), 2);
    }
}
