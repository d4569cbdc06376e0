//! The dataset cache every worker of this process shares: each dataset's copy on each
//! device, loaded (CIFAR-10 fetched into an empty data directory) on first need, and the
//! back-off while the data cannot be loaded.

use super::WorkerSettings;
use crate::dataset::Dataset;
use crate::train::data::{Data, DataError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tch::Device;
use tracing::info;

/// The datasets loaded so far, by dataset and device, and whether loading is on hold.
#[derive(Default)]
pub(super) struct Datasets {
    loaded: Mutex<HashMap<(&'static str, String), Arc<Data>>>,
    /// Set when the data could not be loaded: until when workers hold off claiming, and the
    /// data directory as it was then (a change there, an admin's fix, ends the wait at once).
    blocked: Mutex<Option<(Instant, u64)>>,
}

/// The data directory's files as they are now (names, sizes, modification times), to notice
/// an admin's fix without reading the data.
fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let files = crate::dataset::ALL.iter().flat_map(|d| d.train_files.iter().chain(d.test_files));
    for f in files {
        f.hash(&mut h);
        if let Ok(m) = std::fs::metadata(dir.join(f)) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

impl Datasets {
    /// True while workers should not claim: the data failed to load less than the retry
    /// interval ago and its directory has not changed since.
    pub(super) fn blocked(&self, settings: &WorkerSettings) -> bool {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match *blocked {
            Some((until, seen)) if Instant::now() < until && seen == fingerprint(&settings.data_dir) => true,
            Some(_) => {
                *blocked = None;
                false
            }
            None => false,
        }
    }

    /// Holds claims off for the retry interval (or until the data directory changes).
    pub(super) fn block(&self, settings: &WorkerSettings) {
        let until = Instant::now() + settings.retry;
        *self.blocked.lock().unwrap_or_else(PoisonError::into_inner) = Some((until, fingerprint(&settings.data_dir)));
    }

    /// `dataset` on `device`, loaded on first need (CIFAR-10 is fetched into an empty data
    /// directory).
    ///
    /// N.B.: one copy serves every worker of the device at once; `Data` can be shared
    /// because its splits can only be read (see `train::data::Split`).
    pub(super) fn get(
        &self,
        dataset: &'static Dataset,
        device: Device,
        settings: &WorkerSettings,
    ) -> Result<Arc<Data>, String> {
        let key = (dataset.name, crate::device::device_name(device));
        let mut sets = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = sets.get(&key) {
            return Ok(d.clone());
        }
        let dir = &settings.data_dir;
        let fetchable = dataset == &crate::dataset::CIFAR10;
        let loaded = match Data::load(dataset, dir, device) {
            Err(DataError::Missing { .. }) if fetchable && crate::fetch::is_empty_dir(dir) => {
                info!(data.dir = %dir.display(), "data directory is empty; fetching CIFAR-10");
                crate::fetch::fetch(&settings.fetch, dir).map_err(|e| {
                    format!(
                        "CIFAR-10 is not in {} and fetching it failed ({}); {}",
                        dir.display(),
                        crate::fetch::describe(&e),
                        dataset.where_to_get
                    )
                })?;
                Data::load(dataset, dir, device)
            }
            other => other,
        };
        let data = Arc::new(loaded.map_err(|e| e.to_string())?);
        sets.insert(key, data.clone());
        Ok(data)
    }
}
