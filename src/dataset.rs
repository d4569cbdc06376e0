//! The datasets a spec can name, as plain data: the images' shape, the classes and their
//! names, the split sizes, how images are normalised and which files hold them. The spec's
//! bounds, the network plans, augmentation, the engine and the worker's data cache read a
//! `Dataset` instead of CIFAR-10's numbers; adding a dataset is a constant here and, for a
//! new file format, its reader in `train::data`.

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
    /// The files of each split in the data directory, in the order they are read.
    pub train_files: &'static [&'static str],
    pub test_files: &'static [&'static str],
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
}

/// CIFAR-10 in its binary version, normalised as the PyTorch tutorial does ((x − 0.5) / 0.5).
pub const CIFAR10: Dataset = Dataset {
    name: "cifar10",
    title: "CIFAR-10",
    channels: 3,
    height: 32,
    width: 32,
    classes: &["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    train_images: 50_000,
    test_images: 10_000,
    mean: &[0.5, 0.5, 0.5],
    std: &[0.5, 0.5, 0.5],
    train_files: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test_files: &["test_batch.bin"],
    where_to_get: "get the CIFAR-10 binary version (cifar-10-binary.tar.gz) from \
        https://www.cs.toronto.edu/~kriz/cifar.html and unpack its cifar-10-batches-bin files there",
};

/// Every dataset a spec can name, the default first.
pub const ALL: &[&Dataset] = &[&CIFAR10];

/// The spec's names for them, in `ALL`'s order.
pub const NAMES: &[&str] = &["cifar10"];

/// The dataset a spec names.
pub fn named(name: &str) -> Option<&'static Dataset> {
    ALL.iter().copied().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_dataset_in_order_and_each_has_a_shape_per_channel() {
        assert_eq!(NAMES, ALL.iter().map(|d| d.name).collect::<Vec<_>>());
        for d in ALL {
            assert_eq!(named(d.name), Some(*d));
            assert_eq!((d.mean.len(), d.std.len()), (d.channels as usize, d.channels as usize), "{}", d.name);
            assert!(d.std.iter().all(|&s| s > 0.0), "{}", d.name);
        }
        assert_eq!(CIFAR10.image_numel(), 3 * 32 * 32);
        assert_eq!(named("mnist"), None);
    }
}
