//! Reading a dataset's files into raw bytes: CIFAR's binary records (CIFAR-10, CIFAR-100,
//! the store's own imports) and IDX (MNIST, Fashion-MNIST), plain or gzipped. Pure Rust,
//! no tensors: `train::data` turns what this reads into a split on a device.

use super::{Dataset, Format};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What is wrong with a dataset's files; each names the file and the folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file the dataset needs is not there.
    #[error("{} file {file} is missing from {dir}; {}", .data.title, .data.where_to_get, dir = .dir.display())]
    Missing { data: &'static Dataset, file: String, dir: PathBuf },
    /// The file's size is not a whole number of records, or it holds none.
    #[error("{} file {file} in {dir} is {size} bytes, not a whole number of {}-byte records (it may be truncated); {}",
        .data.title, record_bytes(.data), .data.where_to_get, dir = .dir.display())]
    Truncated { data: &'static Dataset, file: String, dir: PathBuf, size: u64 },
    /// A record's label is not one of the dataset's classes.
    #[error("{} file {file} in {dir} has label {label} in record {record}; labels are 0 to {}, so this is not a {} file",
        .data.title, .data.num_classes() - 1, .data.title, dir = .dir.display())]
    BadLabel { data: &'static Dataset, file: String, dir: PathBuf, record: usize, label: u8 },
    /// The file reads, but not as the dataset's format says (an IDX header, a gzip stream,
    /// a count that disagrees, a checksum).
    #[error("{} file {file} in {dir} is damaged: {why}; {}", .data.title, .data.where_to_get, dir = .dir.display())]
    Corrupt { data: &'static Dataset, file: String, dir: PathBuf, why: String },
    /// The file exists but could not be read.
    #[error("could not read {} file {file} in {dir}: {source}", .data.title, dir = .dir.display())]
    Io { data: &'static Dataset, file: String, dir: PathBuf, source: std::io::Error },
}

impl DataError {
    /// `missing` or `corrupt`, as `GET /datasets` says it.
    pub fn state(&self) -> &'static str {
        match self {
            DataError::Missing { .. } => "missing",
            _ => "corrupt",
        }
    }
}

/// Bytes per record of the binary format: the label bytes, then the image.
pub fn record_bytes(data: &Dataset) -> usize {
    let header = match data.format {
        Format::Records { header, .. } => header,
        Format::Idx => 0,
    };
    header + data.image_numel() as usize
}

/// The path of `file` in `dir`: as named, or gzipped (`NAME.gz`) for IDX files.
pub fn file_in(data: &Dataset, dir: &Path, file: &str) -> Option<PathBuf> {
    let plain = dir.join(file);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{file}.gz"));
    (data.format == Format::Idx && gz.is_file()).then_some(gz)
}

/// One split as read: images [n, C, H, W] as bytes, and a label per image.
pub struct RawSplit {
    pub images: Vec<u8>,
    pub labels: Vec<i64>,
}

/// Checks that `dir` holds `data`'s files, each of a plausible size, reading nothing but
/// an IDX file's header.
pub fn check_files(data: &'static Dataset, dir: &Path) -> Result<(), DataError> {
    for file in data.files() {
        let err = |e: std::io::Error| io_error(data, dir, file, e);
        let Some(path) = file_in(data, dir, file) else {
            return Err(DataError::Missing { data, file: file.into(), dir: dir.into() });
        };
        let size = std::fs::metadata(&path).map_err(err)?.len();
        match data.format {
            Format::Records { .. } if size == 0 || !size.is_multiple_of(record_bytes(data) as u64) => {
                return Err(DataError::Truncated { data, file: file.into(), dir: dir.into(), size })
            }
            Format::Records { .. } => {}
            Format::Idx if size == 0 => {
                return Err(corrupt(data, dir, file, "it is empty".into()));
            }
            Format::Idx => {}
        }
    }
    Ok(())
}

/// Reads `files` of `data` in `dir` (one split), checking labels, counts and checksums.
pub fn read_split(data: &'static Dataset, dir: &Path, files: &[&str]) -> Result<RawSplit, DataError> {
    match data.format {
        Format::Records { header, label_at } => {
            let mut out = RawSplit { images: Vec::new(), labels: Vec::new() };
            for file in files {
                let bytes = read_file(data, dir, file)?;
                read_records(data, dir, file, &bytes, header, label_at, &mut out)?;
            }
            Ok(out)
        }
        Format::Idx => {
            let [images, labels] = files else { unreachable!("an IDX split is an images file and a labels file") };
            read_idx(data, dir, images, labels)
        }
    }
}

fn io_error(data: &'static Dataset, dir: &Path, file: &str, source: std::io::Error) -> DataError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DataError::Missing { data, file: file.into(), dir: dir.into() }
    } else {
        DataError::Io { data, file: file.into(), dir: dir.into(), source }
    }
}

fn corrupt(data: &'static Dataset, dir: &Path, file: &str, why: String) -> DataError {
    DataError::Corrupt { data, file: file.into(), dir: dir.into(), why }
}

/// A file's bytes, gunzipped if it is a gzipped IDX file, its checksum checked where the
/// dataset records one.
fn read_file(data: &'static Dataset, dir: &Path, file: &str) -> Result<Vec<u8>, DataError> {
    let path =
        file_in(data, dir, file).ok_or_else(|| DataError::Missing { data, file: file.into(), dir: dir.into() })?;
    let raw = std::fs::read(&path).map_err(|e| io_error(data, dir, file, e))?;
    if let Some((_, want)) = data.sha256.iter().find(|(f, _)| *f == file) {
        let got = hex::encode(Sha256::digest(&raw));
        if got != *want {
            return Err(corrupt(data, dir, file, format!("its SHA-256 is {got}, but it was imported as {want}")));
        }
    }
    // N.B.: only IDX files come gzipped; a record file may begin with the same two bytes
    // (label 31, then a pixel of 139) and is read as it is.
    if data.format != Format::Idx || !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // N.B.: a gzip bomb stops at twice the largest split the dataset states (a header and
    // a few more images than stated still read, and then fail the count check by name).
    let most = data.train_images.max(data.test_images).saturating_mul(data.image_numel() as u64).saturating_mul(2);
    let cap = most.saturating_add(1 << 20);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(data, dir, file, format!("it does not gunzip ({e})")))?;
    if out.len() as u64 >= cap {
        return Err(corrupt(
            data,
            dir,
            file,
            format!("it gunzips to more than {cap} bytes, more than {} could hold", data.title),
        ));
    }
    Ok(out)
}

fn read_records(
    data: &'static Dataset,
    dir: &Path,
    file: &str,
    bytes: &[u8],
    header: usize,
    label_at: usize,
    out: &mut RawSplit,
) -> Result<(), DataError> {
    let record = record_bytes(data);
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::Truncated { data, file: file.into(), dir: dir.into(), size: bytes.len() as u64 });
    }
    out.images.reserve(bytes.len() / record * (record - header));
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_at];
        if i64::from(label) >= data.num_classes() {
            return Err(DataError::BadLabel { data, file: file.into(), dir: dir.into(), record: i, label });
        }
        out.labels.push(label.into());
        out.images.extend_from_slice(&chunk[header..]);
    }
    Ok(())
}

/// An IDX file's dimensions and where its data starts, checked against `want_dims`
/// (`None` where any size is allowed) and its length.
fn idx_header(bytes: &[u8], want_dims: &[Option<usize>]) -> Result<(Vec<usize>, usize), String> {
    let magic = bytes.get(..4).ok_or("it is shorter than an IDX header")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format!("it does not start as an IDX file (first bytes {magic:02x?})"));
    }
    if magic[2] != 0x08 {
        return Err(format!("its values are of IDX type 0x{:02x}, not unsigned bytes (0x08)", magic[2]));
    }
    let ndims = usize::from(magic[3]);
    if ndims != want_dims.len() {
        return Err(format!("it has {ndims} dimensions, expected {}", want_dims.len()));
    }
    let start = 4 + 4 * ndims;
    let head = bytes.get(4..start).ok_or("it is shorter than its IDX header")?;
    let dims: Vec<usize> =
        head.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    for (i, (got, want)) in dims.iter().zip(want_dims).enumerate() {
        if want.is_some_and(|w| w != *got) {
            return Err(format!("its dimension {i} is {got}, expected {}", want.unwrap_or(0)));
        }
    }
    let values = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("its dimensions overflow")?;
    if bytes.len() - start != values {
        return Err(format!(
            "its header promises {values} values ({dims:?}) but it holds {} (it may be truncated)",
            bytes.len() - start
        ));
    }
    Ok((dims, start))
}

fn read_idx(data: &'static Dataset, dir: &Path, images_file: &str, labels_file: &str) -> Result<RawSplit, DataError> {
    let images = read_file(data, dir, images_file)?;
    let (h, w) = (data.height as usize, data.width as usize);
    // N.B.: MNIST's images are [n, 28, 28] (one channel, no channel dimension).
    let (dims, start) =
        idx_header(&images, &[None, Some(h), Some(w)]).map_err(|why| corrupt(data, dir, images_file, why))?;
    let labels = read_file(data, dir, labels_file)?;
    let (ldims, lstart) = idx_header(&labels, &[Some(dims[0])]).map_err(|why| corrupt(data, dir, labels_file, why))?;
    debug_assert_eq!(ldims[0], dims[0]);
    if dims[0] == 0 {
        return Err(corrupt(data, dir, images_file, "it holds no images".into()));
    }
    let mut out = RawSplit { images: Vec::new(), labels: Vec::with_capacity(dims[0]) };
    for (record, &label) in labels[lstart..].iter().enumerate() {
        if i64::from(label) >= data.num_classes() {
            return Err(DataError::BadLabel { data, file: labels_file.into(), dir: dir.into(), record, label });
        }
        out.labels.push(label.into());
    }
    let mut images = images;
    images.drain(..start);
    out.images = images;
    Ok(out)
}

/// Writes a split as IDX files (for tests and for labs converting data): `images` holds
/// [n, h, w] bytes.
pub fn write_idx(
    images_path: &Path,
    labels_path: &Path,
    images: &[u8],
    labels: &[u8],
    h: u32,
    w: u32,
) -> std::io::Result<()> {
    let n = labels.len() as u32;
    let mut out = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(images);
    write_maybe_gz(images_path, &out)?;
    let mut out = vec![0, 0, 8, 1];
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(labels);
    write_maybe_gz(labels_path, &out)
}

/// Writes `bytes` to `path`, gzipped when the name ends in `.gz`.
fn write_maybe_gz(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes)?;
        std::fs::write(path, gz.finish()?)
    } else {
        std::fs::write(path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_file_that_begins_like_gzip_is_read_as_records() {
        static FORTY: Dataset = Dataset {
            name: "forty",
            channels: 1,
            height: 1,
            width: 2,
            classes: &["c"; 40],
            mean: &[0.5],
            std: &[0.5],
            train_files: &["train.bin"],
            test_files: &["train.bin"],
            ..crate::dataset::CIFAR10
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.bin"), [0x1f, 0x8b, 7, 2, 1, 2]).unwrap();
        let split = read_split(&FORTY, dir.path(), FORTY.train_files).unwrap();
        assert_eq!((split.labels, split.images), (vec![31, 2], vec![0x8b, 7, 1, 2]));
    }

    #[test]
    fn an_idx_header_is_checked_against_its_shape_and_length() {
        let mut f = vec![0, 0, 8, 3];
        for d in [2u32, 2, 3] {
            f.extend_from_slice(&d.to_be_bytes());
        }
        f.extend_from_slice(&[1; 12]);
        assert_eq!(idx_header(&f, &[None, Some(2), Some(3)]).unwrap(), (vec![2, 2, 3], 16));
        assert!(idx_header(&f, &[None, Some(28), Some(28)]).unwrap_err().contains("dimension 1 is 2, expected 28"));
        assert!(idx_header(&f[..20], &[None, Some(2), Some(3)]).unwrap_err().contains("promises 12 values"));
        let mut floats = f.clone();
        floats[2] = 0x0d;
        assert!(idx_header(&floats, &[None, Some(2), Some(3)]).unwrap_err().contains("type 0x0d"));
        assert!(idx_header(b"PK\x03\x04", &[None]).unwrap_err().contains("does not start as an IDX file"));
    }
}
