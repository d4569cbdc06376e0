//! `trainyard data fetch`: the official CIFAR-10 binary archive, checked by MD5, of which
//! only the expected files are unpacked into the data directory.

use anyhow::{bail, Context};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Where the archive comes from and the MD5 it must have.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub md5: String,
}

impl Default for Source {
    fn default() -> Self {
        Source { url: OFFICIAL_URL.into(), md5: OFFICIAL_MD5.into() }
    }
}

/// True when `dir` does not exist or holds nothing.
pub fn is_empty_dir(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => true,
    }
}

/// Downloads, checks and unpacks CIFAR-10's binary files into `dir`.
pub fn fetch(source: &Source, dir: &Path) -> anyhow::Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(&source.url).call().with_context(|| format!("downloading {}", source.url))?;
    let mut archive = Vec::new();
    response
        .into_reader()
        .take(400 << 20)
        .read_to_end(&mut archive)
        .with_context(|| format!("reading {}", source.url))?;
    let digest = hex::encode(Md5::digest(&archive));
    if digest != source.md5 {
        bail!("{} has MD5 {digest}, expected {}; the download is damaged or not CIFAR-10", source.url, source.md5);
    }
    unpack(&archive, dir)
}

/// Writes the archive's `cifar-10-batches-bin/<expected file>` entries into `dir`, each
/// through a temporary file and a rename; anything else in the archive is skipped.
pub fn unpack(archive: &[u8], dir: &Path) -> anyhow::Result<()> {
    let cifar = &crate::dataset::CIFAR10;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files: Vec<&str> = cifar.train_files.iter().chain(cifar.test_files).copied().collect();
    let wanted: Vec<&str> = files.iter().copied().chain(["batches.meta.txt"]).collect();
    let mut found = 0;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let parent_ok = path.parent().and_then(|p| p.file_name()).is_some_and(|p| p == "cifar-10-batches-bin");
        if !parent_ok || !wanted.contains(&name.as_str()) || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        let tmp = dir.join(format!(".{name}.part"));
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(&name))?;
        found += 1;
    }
    if found < files.len() {
        bail!("the archive lacks some of the CIFAR-10 binary files (found {found})");
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
