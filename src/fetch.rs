//! `trainyard data fetch`: a built-in dataset's published files (CIFAR-10's and CIFAR-100's
//! binary archives, MNIST's and Fashion-MNIST's four IDX files), each checked by its
//! published MD5, of which only the dataset's files land in its folder of the data
//! directory.

use crate::dataset::Dataset;
use anyhow::{bail, Context};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Where the archive comes from and the MD5 it must have.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub md5: String,
    /// Where every built-in dataset's files are fetched from instead of their homes (`at`;
    /// CIFAR-10's too, unless `url` is set to another than the official).
    pub mirror: Option<String>,
}

impl Source {
    /// Where `data`'s file `url` is fetched from: the mirror's copy (`MIRROR/<dataset's
    /// folder>/<file name>`: MNIST and Fashion-MNIST name their files alike), when there is
    /// a mirror.
    fn at(&self, data: &Dataset, url: &str) -> String {
        match &self.mirror {
            Some(m) => {
                format!("{}/{}/{}", m.trim_end_matches('/'), data.dirs[0], url.rsplit('/').next().unwrap_or(url))
            }
            None => url.to_string(),
        }
    }
}

impl Default for Source {
    fn default() -> Self {
        Source { url: OFFICIAL_URL.into(), md5: OFFICIAL_MD5.into(), mirror: None }
    }
}

/// True when `dir` does not exist or holds nothing.
pub fn is_empty_dir(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => true,
    }
}

/// Downloads `url`'s bytes (at most `limit`) and checks their MD5.
fn download(url: &str, md5: &str, limit: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(url).call().with_context(|| format!("downloading {url}"))?;
    let mut bytes = Vec::new();
    response.into_reader().take(limit).read_to_end(&mut bytes).with_context(|| format!("reading {url}"))?;
    let digest = hex::encode(Md5::digest(&bytes));
    if digest != md5 {
        bail!("{url} has MD5 {digest}, expected {md5}; the download is damaged or not {what}");
    }
    Ok(bytes)
}

/// Downloads, checks and unpacks CIFAR-10's binary files into `dir`.
pub fn fetch(source: &Source, dir: &Path) -> anyhow::Result<()> {
    fetch_into(&crate::dataset::CIFAR10, dir, source)
}

/// Fetches a built-in dataset into its folder of `data_dir` (`Dataset::home`), CIFAR-10
/// from the settings' `source`, the others from their homes or `source`'s mirror; returns
/// the folder.
pub fn fetch_dataset(data: &'static Dataset, data_dir: &Path, source: &Source) -> anyhow::Result<PathBuf> {
    let dir = data.home(data_dir);
    fetch_into(data, &dir, source)?;
    Ok(dir)
}

/// What `data` is fetched from, each with its MD5: its published files (or the mirror's
/// copies); CIFAR-10's archive is the settings' (`source.url`, `source.md5`), mirrored only
/// while it is the official one.
fn sources(data: &'static Dataset, source: &Source) -> anyhow::Result<Vec<(String, String)>> {
    if data == &crate::dataset::CIFAR10 {
        let url = if source.url == OFFICIAL_URL { source.at(data, OFFICIAL_URL) } else { source.url.clone() };
        return Ok(vec![(url, source.md5.clone())]);
    }
    let Some(from) = &data.download else {
        bail!("{} cannot be fetched; {}", data.title, data.where_to_get);
    };
    Ok(from.files.iter().map(|(url, md5)| (source.at(data, url), md5.to_string())).collect())
}

/// Downloads and checks `data`'s files and puts them in `dir`: an archive's dataset files
/// unpacked, or each file as it is (every file downloaded first: a failed download leaves
/// the folder as it was).
fn fetch_into(data: &'static Dataset, dir: &Path, source: &Source) -> anyhow::Result<()> {
    let from = sources(data, source)?;
    if data.download.as_ref().is_some_and(|d| d.archive_folder.is_some()) {
        let [(url, md5)] = from.as_slice() else { bail!("{}: one archive expected", data.title) };
        let archive = download(url, md5, 400 << 20, data.title)?;
        return unpack(&archive, data, dir);
    }
    let mut files = Vec::new();
    for (url, md5) in &from {
        let bytes = download(url, md5, 100 << 20, data.title)?;
        files.push((url.rsplit('/').next().unwrap_or(url).to_string(), bytes));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in files {
        write_atomically(dir, &name, &bytes)?;
    }
    Ok(())
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

/// Writes the archive's `<archive folder>/<expected file>` entries into `dir`, each
/// through a temporary file and a rename; anything else in the archive is skipped.
pub fn unpack(archive: &[u8], data: &'static Dataset, dir: &Path) -> anyhow::Result<()> {
    let folder = data.download.as_ref().and_then(|d| d.archive_folder).unwrap_or_default();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files: Vec<&str> = data.files().collect();
    let mut found = 0;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let parent_ok = path.parent().and_then(|p| p.file_name()).is_some_and(|p| p == folder);
        if !parent_ok || !files.contains(&name.as_str()) || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        write_atomically(dir, &name, &bytes)?;
        found += 1;
    }
    if found < files.len() {
        bail!("the archive lacks some of the {} files (found {found} of {})", data.title, files.len());
    }
    Ok(())
}

/// An error and its causes as one line, each cause said once: a cause whose text the line
/// holds already is left out (ureq's DNS error prints its source in its own message, so
/// `{:#}` said "failed to lookup address" twice). The command line prints its errors so too.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod describe_tests {
    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Dns Failed: {}", self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::other("failed to lookup address information");
        let e = anyhow::Error::new(Wrapped(io)).context("downloading https://example/x.tar.gz");
        assert_eq!(format!("{e:#}").matches("failed to lookup").count(), 2, "the repetition this fixes");
        let said = super::describe(&e);
        assert_eq!(said, "downloading https://example/x.tar.gz: Dns Failed: failed to lookup address information");
    }
}
