//! A dataset's two splits, loaded once onto the training device as uint8 (each format read
//! by `dataset::formats`), and the batch source
//! that turns them into normalised mini-batches in a seeded order.

use super::augment::{self, AugmentParams};
pub use super::model::Images;
use super::native;
use super::rng::EpochRng;
use crate::dataset::Dataset;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub use crate::dataset::formats::{record_bytes, DataError};

/// One split's raw images ([N, C, H, W] uint8) and labels ([N] int64), resident on a
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
    /// Whose images these are: how they are normalised.
    data: &'static Dataset,
    /// The normalisation as a scale and a shift per channel ([C] float on the CPU):
    /// (x/255 − mean)/std = x·scale − shift.
    scale: Tensor,
    shift: Tensor,
}

// SAFETY: see the N.B. above; the only `&self` methods read.
unsafe impl Sync for Split {}

impl Split {
    /// A split of `data`'s `images` [N, C, H, W] (uint8) and `labels` [N] (int64).
    pub fn new(images: Tensor, labels: Tensor, data: &'static Dataset) -> Split {
        assert_eq!(images.kind(), Kind::Uint8, "a split holds raw uint8 images");
        assert_eq!(images.size()[0], labels.size()[0], "one label per image");
        assert_eq!(&images.size()[1..], [data.channels, data.height, data.width], "{}'s image shape", data.title);
        let (scale, shift) = scale_and_shift(data);
        Split { images, labels, data, scale, shift }
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

    /// The images at `rows` ([K] int64), normalised: [K, C, H, W] float.
    ///
    /// N.B.: on the CPU in one pass of ours (`native::normalised_rows`), the same bits as
    /// `normalise` of the rows libtorch's `index_select` gathers.
    pub fn images_at(&self, rows: &Tensor) -> Tensor {
        if self.device() == Device::Cpu {
            return native::normalised_rows(&self.images, rows, &self.scale, &self.shift, 0);
        }
        normalise(&self.images.index_select(0, rows), self.data)
    }

    /// The images at `rows` ([G·B] int64, member after member), normalised, with the `g`
    /// members' channels side by side and channels last in memory: [B, G·C, H, W], as a fused
    /// group's first convolution takes them (what `images_at` and a permute make, in one pass
    /// on the CPU).
    pub fn images_side_by_side(&self, rows: &Tensor, g: i64) -> Tensor {
        if self.device() == Device::Cpu {
            return native::normalised_rows(&self.images, rows, &self.scale, &self.shift, g);
        }
        super::model::side_by_side(&self.images_at(rows), g)
    }

    /// `len` images from `start`, normalised.
    pub fn images_from(&self, start: i64, len: i64) -> Tensor {
        normalise(&self.images.narrow(0, start, len), self.data)
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
        Split {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            data: self.data,
            scale: self.scale.shallow_clone(),
            shift: self.shift.shallow_clone(),
        }
    }
}

/// A dataset's two splits, resident on one device.
pub struct Data {
    pub dataset: &'static Dataset,
    pub train: Split,
    pub test: Split,
    pub device: Device,
}

impl Data {
    /// Loads `dataset`'s files from where they are in the data directory `data_dir`
    /// (`Dataset::locate`) onto `device`.
    pub fn load(dataset: &'static Dataset, data_dir: &Path, device: Device) -> Result<Data, DataError> {
        let dir = dataset.locate(data_dir);
        let train = read_split(dataset, &dir, dataset.train_files)?;
        let test = read_split(dataset, &dir, dataset.test_files)?;
        Ok(Data { dataset, train: train.to_device(device), test: test.to_device(device), device })
    }
}

/// Whether the data directory holds the dataset's files (`dataset::check_present`).
pub fn check_present(data: &'static Dataset, data_dir: &Path) -> Result<(), DataError> {
    crate::dataset::check_present(data, data_dir)
}

fn read_split(data: &'static Dataset, dir: &Path, files: &[&str]) -> Result<Split, DataError> {
    let raw = crate::dataset::formats::read_split(data, dir, files)?;
    let n = raw.labels.len() as i64;
    let images = Tensor::from_slice(&raw.images).view([n, data.channels, data.height, data.width]);
    Ok(Split::new(images, Tensor::from_slice(&raw.labels), data))
}

/// `data`'s normalisation per channel as x·scale − shift, each a [C] float tensor on the CPU:
/// scale 1/(255·std) and shift mean/std, rounded to float as libtorch rounds a scalar operand
/// of a float tensor (`normalise`).
fn scale_and_shift(data: &Dataset) -> (Tensor, Tensor) {
    let per_channel =
        |f: &dyn Fn(usize) -> f64| Tensor::from_slice(&(0..data.mean.len()).map(|c| f(c) as f32).collect::<Vec<_>>());
    (per_channel(&|c| 1.0 / (255.0 * data.std[c])), per_channel(&|c| data.mean[c] / data.std[c]))
}

/// Turns uint8 images into `data`'s normalisation, (x/255 − mean)/std per channel, in float:
/// for CIFAR-10 the tutorial's (x/255 − 0.5)/0.5.
///
/// N.B.: the float tensor is new storage only because the input is uint8 (`to_kind` of a
/// tensor already of that kind returns the same storage, which the in-place steps would
/// then change): `Split::new` holds its images to uint8.
fn normalise(images_u8: &Tensor, data: &Dataset) -> Tensor {
    debug_assert_eq!(images_u8.kind(), Kind::Uint8);
    let mut x = images_u8.to_kind(Kind::Float);
    let same = |v: &[f64]| v.windows(2).all(|w| w[0] == w[1]);
    if same(data.mean) && same(data.std) {
        // One scale and shift for every channel: two in-place scalar operations.
        let (mean, std) = (data.mean[0], data.std[0]);
        return x.g_mul_scalar_(1.0 / (255.0 * std)).g_sub_scalar_(mean / std);
    }
    let per_channel = |f: &dyn Fn(usize) -> f64| {
        let v: Vec<f32> = (0..data.mean.len()).map(|c| f(c) as f32).collect();
        Tensor::from_slice(&v).to_device(x.device()).view([1, -1, 1, 1])
    };
    let scale = per_channel(&|c| 1.0 / (255.0 * data.std[c]));
    let shift = per_channel(&|c| data.mean[c] / data.std[c]);
    x.g_mul_(&scale).g_sub_(&shift)
}

/// One mini-batch for every member of a group, normalised (and augmented for the members
/// that ask), on the training device.
pub struct Batch {
    /// Member after member ([G·len, C, H, W]), or side by side where the group asked for it
    /// (`GroupBatches::side_by_side`).
    pub images: Images,
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
    /// Whether a batch of two or more members comes with their channels side by side.
    side_by_side: bool,
}

impl<'a> GroupBatches<'a> {
    pub fn new(split: &'a Split, limit: usize, batch_size: usize, mut members: Vec<MemberEpoch>) -> Self {
        let n = limit.min(split.len());
        let perms: Vec<i64> = members.iter_mut().flat_map(|m| m.rng.permutation(n)).collect();
        let g = members.len() as i64;
        let orders = Tensor::from_slice(&perms).to_device(split.device()).view([g, n as i64]);
        let labels = split.labels_at(&orders.view([-1])).view([g, n as i64]);
        GroupBatches { split, orders, labels, n, batch_size, next: 0, members, side_by_side: false }
    }

    /// Batches of two or more members with their channels side by side, channels last
    /// (`Images::SideBySide`, made in one pass), where no member augments: for a network whose
    /// first layer is a convolution (`model::takes_side_by_side`).
    pub fn side_by_side(mut self, yes: bool) -> Self {
        self.side_by_side = yes;
        self
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
        super::keep_only(&mut self.members, keep);
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
        let mut plans = Vec::new();
        let mut rows = Vec::new();
        for (g, m) in self.members.iter_mut().enumerate() {
            if let Some(params) = &m.augment {
                plans.extend(params.sample(&mut m.rng, len));
                rows.extend((g * len) as i64..((g + 1) * len) as i64);
            }
        }
        let g = self.members.len();
        let images = if rows.is_empty() && self.side_by_side && g > 1 {
            Images::SideBySide(self.split.images_side_by_side(&idx, g as i64))
        } else {
            let mut images = self.split.images_at(&idx);
            if rows.len() == images.size()[0] as usize {
                images = augment::apply(&images, &plans);
            } else if !rows.is_empty() {
                let rows = Tensor::from_slice(&rows).to_device(images.device());
                let augmented = augment::apply(&images.index_select(0, &rows), &plans);
                let _ = images.index_copy_(0, &rows, &augmented);
            }
            Images::Stacked(images)
        };
        let labels = self.labels.narrow(1, start as i64, len as i64).reshape([-1]);
        Some(Batch { images, labels, start, len })
    }
}

/// Writes a small learnable dataset in the CIFAR-10 binary format: each class has its own
/// colour and stripe direction, plus noise. For tests and the demo; the real data never
/// comes from here.
pub fn write_synthetic(dir: &Path, train_per_file: usize, test: usize, seed: u64) -> std::io::Result<()> {
    let data = &crate::dataset::CIFAR10;
    let (channels, height, width) = (data.channels as usize, data.height as usize, data.width as usize);
    let classes = data.classes.len();
    std::fs::create_dir_all(dir)?;
    let mut rng = EpochRng::new(seed, 0);
    let mut write = |name: &str, count: usize| -> std::io::Result<()> {
        let mut out = Vec::with_capacity(count * record_bytes(data));
        for i in 0..count {
            let class = (i + rng.below(3) as usize) % classes;
            out.push(class as u8);
            for c in 0..channels {
                // A colour per class and channel, and a stripe pattern whose period depends on the class.
                let base = 40.0 + 170.0 * (((class * 7 + c * 3) % 10) as f32 / 9.0);
                for y in 0..height {
                    for x in 0..width {
                        let stripe = if class.is_multiple_of(2) { x } else { y };
                        let wave = if (stripe / (2 + class / 2)).is_multiple_of(2) { 25.0 } else { -25.0 };
                        let noise = (rng.uniform() - 0.5) * 60.0;
                        out.push((base + wave + noise).clamp(0.0, 255.0) as u8);
                    }
                }
            }
        }
        std::fs::write(dir.join(name), out)
    };
    for file in data.train_files {
        write(file, train_per_file)?;
    }
    for file in data.test_files {
        write(file, test)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "raw uint8 images")]
    fn a_split_refuses_float_images_whose_normalising_would_write_them() {
        let images = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        Split::new(images, Tensor::zeros([2], (Kind::Int64, Device::Cpu)), &crate::dataset::CIFAR10);
    }

    #[test]
    fn reading_a_split_leaves_it_as_it_was() {
        let images = Tensor::from_slice(&[7u8; 2 * 3 * 32 * 32]).view([2, 3, 32, 32]);
        let split = Split::new(images, Tensor::from_slice(&[1i64, 2]), &crate::dataset::CIFAR10);
        let rows = Tensor::from_slice(&[1i64]);
        for mut t in [split.images_at(&rows), split.images_from(0, 2)] {
            let _ = t.fill_(0.0);
        }
        let _ = split.labels_from(0, 2).fill_(0);
        assert_eq!(split.raw_images().int64_value(&[1, 2, 3, 4]), 7);
        assert_eq!(split.labels().int64_value(&[1]), 2);
    }

    /// The bits of `t` (a float tensor, contiguous as [numel]), to compare exactly.
    fn bits(t: &Tensor) -> Vec<i32> {
        Vec::<i32>::try_from(t.contiguous().view_dtype(Kind::Int).view([-1])).unwrap()
    }

    #[test]
    fn a_batch_gathered_in_one_pass_has_the_bits_of_libtorchs_gather_and_normalisation_in_either_layout() {
        static PER_CHANNEL: Dataset =
            Dataset { mean: &[0.4914, 0.4822, 0.4465], std: &[0.247, 0.243, 0.261], ..crate::dataset::CIFAR10 };
        let (n, len) = (9, 4);
        // Every byte value, in every channel and position.
        let values: Vec<u8> = (0..n * 3 * 32 * 32).map(|i| (i * 37 % 256) as u8).collect();
        for data in [&crate::dataset::CIFAR10, &PER_CHANNEL] {
            let split = Split::new(
                Tensor::from_slice(&values).view([n, 3, 32, 32]),
                Tensor::zeros([n], (Kind::Int64, Device::Cpu)),
                data,
            );
            for g in [1i64, 2, 3] {
                // Member after member, rows repeated and out of order.
                let rows: Vec<i64> = (0..g * len).map(|i| (i * 5 + 3) % n).collect();
                let rows = Tensor::from_slice(&rows);
                let libtorch = normalise(&split.images.index_select(0, &rows), data);
                let stacked = split.images_at(&rows);
                assert_eq!(stacked.size(), [g * len, 3, 32, 32]);
                assert!(stacked.is_contiguous());
                assert_eq!(bits(&stacked), bits(&libtorch), "{} stacked, {g} members", data.name);
                // Side by side: member m's channel c at m·3 + c, channels last in memory.
                let side = split.images_side_by_side(&rows, g);
                let want = libtorch.view([g, len, 3, 32, 32]).permute([1, 0, 2, 3, 4]).reshape([len, g * 3, 32, 32]);
                assert_eq!(side.size(), [len, g * 3, 32, 32]);
                assert!(side.permute([0, 2, 3, 1]).is_contiguous(), "channels last");
                assert_eq!(bits(&side), bits(&want), "{} side by side, {g} members", data.name);
            }
        }
        // A row past the split is an error that says so, not a read past the images.
        let split = Split::new(
            Tensor::zeros([2, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
            Tensor::zeros([2], (Kind::Int64, Device::Cpu)),
            &crate::dataset::CIFAR10,
        );
        for rows in [[0i64, 2], [-1, 0]] {
            let r = std::panic::catch_unwind(|| split.images_at(&Tensor::from_slice(&rows)));
            let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
            assert!(msg.contains("out of range for 2 images"), "{msg}");
        }
    }

    #[test]
    fn each_channel_is_normalised_with_its_own_mean_and_std() {
        static TWO: Dataset = Dataset {
            name: "two",
            channels: 2,
            height: 1,
            width: 1,
            mean: &[0.25, 0.5],
            std: &[0.5, 0.2],
            ..crate::dataset::CIFAR10
        };
        let images = Tensor::from_slice(&[51u8, 204]).view([1, 2, 1, 1]);
        let split = Split::new(images, Tensor::from_slice(&[0i64]), &TWO);
        let got = split.images_from(0, 1);
        for (c, x) in [51.0, 204.0].iter().enumerate() {
            let want = (x / 255.0 - TWO.mean[c]) / TWO.std[c];
            assert!((got.double_value(&[0, c as i64, 0, 0]) - want).abs() < 1e-6, "channel {c}: {got}");
        }
    }
}
