//! The dataset cache every worker of this process shares: each dataset's copy on each
//! device, loaded (a built-in one fetched when its folder is empty) on first need, at most
//! `max_in_memory` per device (the least recently used goes first), and the hold on each
//! dataset that cannot be loaded: its jobs wait in the queue, the other datasets' do not.

use super::WorkerSettings;
use crate::dataset::Dataset;
use crate::train::data::{Data, DataError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tch::Device;
use tracing::info;

/// One loaded copy and when it was last handed out.
struct Loaded {
    /// N.B.: the description itself, not its name: a lab's re-import (`--replace`) is
    /// another description of the same name, and its jobs must get the new copy.
    dataset: &'static Dataset,
    device: String,
    data: Arc<Data>,
    used: u64,
}

/// A failed load: when, why, and the data directory as it was before it.
type Failure = (Instant, String, u64);

/// The datasets loaded so far, and which are on hold.
#[derive(Default)]
pub(super) struct Datasets {
    loaded: Mutex<(Vec<Loaded>, u64)>,
    /// A lock per dataset folder held while one of its datasets loads or is fetched, so two
    /// workers never fetch into one folder at once (cifar100 and cifar100-coarse share
    /// one), and a slow one does not hold up the other folders.
    loading: Mutex<HashMap<&'static str, Arc<Mutex<()>>>>,
    /// The last failed load of each dataset, which holds it: its jobs are not claimed, and a
    /// worker that waited on the lock while it failed takes its answer instead of fetching
    /// again, until the retry interval passes or the data directory is no longer as it was
    /// before that load (files that arrived meanwhile, an admin's fix, end the hold at once).
    failed: Mutex<HashMap<&'static str, Failure>>,
    /// The data directory's fingerprint when imports were last scanned.
    scanned: Mutex<Option<u64>>,
}

impl Datasets {
    /// The datasets workers may claim jobs of now: every one this process knows (imports
    /// found in the data directory included), less those on hold.
    pub(super) fn claimable(&self, settings: &WorkerSettings) -> Vec<&'static str> {
        let now = crate::dataset::fingerprint(&settings.data_dir);
        {
            let mut scanned = self.scanned.lock().unwrap_or_else(PoisonError::into_inner);
            if *scanned != Some(now) {
                for (dir, why) in crate::dataset::scan(&settings.data_dir) {
                    tracing::warn!(dir = %dir.display(), error = %why, "a dataset's description does not read");
                }
                *scanned = Some(now);
            }
        }
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.retain(|_, (at, _, before)| Self::holds(at, *before, now, settings));
        crate::dataset::all().into_iter().map(|d| d.name).filter(|n| !failed.contains_key(n)).collect()
    }

    /// Whether a load that failed at `at`, with the data directory as `before`, still holds
    /// its dataset now that the directory is as `now`.
    fn holds(at: &Instant, before: u64, now: u64, settings: &WorkerSettings) -> bool {
        at.elapsed() < settings.retry && before == now
    }

    /// Remembers a failed load of `dataset` (which holds it) and gives its reason back.
    fn fail(&self, dataset: &'static Dataset, why: String, before: u64) -> String {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataset.name, (Instant::now(), why.clone(), before));
        why
    }

    /// `dataset` on `device`, loaded on first need (a built-in dataset whose folder holds
    /// none of its files is fetched first: `fetching` is told when that starts and ends).
    ///
    /// N.B.: one copy serves every worker of the device at once; `Data` can be shared
    /// because its splits can only be read (see `train::data::Split`). A copy dropped from
    /// the cache lives on for the groups that still train on it.
    pub(super) fn get(
        &self,
        dataset: &'static Dataset,
        device: Device,
        settings: &WorkerSettings,
        fetching: &dyn Fn(bool),
    ) -> Result<Arc<Data>, String> {
        let device_name = crate::device::device_name(device);
        let cached = || {
            let mut guard = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            let (sets, clock) = &mut *guard;
            *clock += 1;
            let l = sets.iter_mut().find(|l| std::ptr::eq(l.dataset, dataset) && l.device == device_name)?;
            l.used = *clock;
            Some(l.data.clone())
        };
        if let Some(data) = cached() {
            return Ok(data);
        }
        let folder_lock = {
            let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
            loading.entry(dataset.dirs[0]).or_default().clone()
        };
        let _loading = folder_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(data) = cached() {
            return Ok(data);
        }
        let dir = &settings.data_dir;
        let seen = crate::dataset::fingerprint(dir);
        if let Some((at, why, before)) = self.failed.lock().unwrap_or_else(PoisonError::into_inner).get(dataset.name) {
            if Self::holds(at, *before, seen, settings) {
                return Err(why.clone());
            }
        }
        let loaded = match Data::load(dataset, dir, device) {
            Err(DataError::Missing { .. })
                if dataset.download.is_some() && crate::fetch::is_empty_dir(&dataset.locate(dir)) =>
            {
                info!(data.dir = %dir.display(), dataset = dataset.name, "the dataset's folder is empty; fetching it");
                fetching(true);
                let fetched = crate::fetch::fetch_dataset(dataset, dir, &settings.fetch);
                fetching(false);
                match fetched {
                    Ok(_) => Data::load(dataset, dir, device),
                    Err(e) => {
                        let why = format!(
                            "{} is not in {} and fetching it failed ({}); {}",
                            dataset.title,
                            dataset.home(dir).display(),
                            crate::fetch::describe(&e),
                            dataset.where_to_get
                        );
                        return Err(self.fail(dataset, why, seen));
                    }
                }
            }
            other => other,
        };
        let data = Arc::new(loaded.map_err(|e| self.fail(dataset, e.to_string(), seen))?);
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).remove(dataset.name);
        let mut guard = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let (sets, clock) = &mut *guard;
        // The least recently used copies of this device go, to keep at most the setting's.
        let max = settings.max_datasets_in_memory.max(1);
        while sets.iter().filter(|l| l.device == device_name).count() >= max {
            let Some(oldest) = sets
                .iter()
                .enumerate()
                .filter(|(_, l)| l.device == device_name)
                .min_by_key(|(_, l)| l.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            let gone = sets.remove(oldest);
            info!(dataset = gone.dataset.name, device = %device_name, "dropped from memory (least recently used)");
        }
        sets.push(Loaded { dataset, device: device_name, data: data.clone(), used: *clock });
        Ok(data)
    }

    /// The datasets in memory now, by device.
    #[cfg(test)]
    fn in_memory(&self) -> Vec<(&'static str, String)> {
        let guard = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0.iter().map(|l| (l.dataset.name, l.device.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path, max: usize) -> WorkerSettings {
        WorkerSettings {
            data_dir: dir.to_path_buf(),
            lease: std::time::Duration::from_secs(30),
            heartbeat: std::time::Duration::from_secs(1),
            max_attempts: 1,
            threads: None,
            max_running_per_user: 0,
            // N.B.: nothing is fetched from the internet here.
            fetch: crate::fetch::Source {
                url: String::new(),
                md5: String::new(),
                mirror: Some("http://127.0.0.1:9".into()),
            },
            max_group: None,
            max_job_memory_mb: 4096,
            retry: std::time::Duration::from_secs(60),
            alive_every: std::time::Duration::from_secs(1),
            max_datasets_in_memory: max,
            lend_cores: false,
            workers: 1,
        }
    }

    #[test]
    fn the_least_recently_used_dataset_leaves_memory_past_the_limit_and_a_held_one_is_not_claimed() {
        let dir = tempfile::tempdir().unwrap();
        crate::train::data::write_synthetic(&dir.path().join("cifar10"), 2, 3, 1).unwrap();
        // CIFAR-100's records: coarse, fine, image.
        std::fs::create_dir_all(dir.path().join("cifar100")).unwrap();
        for f in ["train.bin", "test.bin"] {
            std::fs::write(dir.path().join("cifar100").join(f), vec![1u8; 3 * 3074]).unwrap();
        }
        let s = settings(dir.path(), 2);
        let sets = Datasets::default();
        let none = |_: bool| {};
        let cpu = Device::Cpu;
        let a = sets.get(&crate::dataset::CIFAR10, cpu, &s, &none).unwrap();
        sets.get(&crate::dataset::CIFAR100, cpu, &s, &none).unwrap();
        // CIFAR-10 again: now the most recently used; the coarse labels' copy pushes out CIFAR-100.
        let again = sets.get(&crate::dataset::CIFAR10, cpu, &s, &none).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "one copy, loaded once");
        sets.get(&crate::dataset::CIFAR100_COARSE_LABELS, cpu, &s, &none).unwrap();
        let mut kept: Vec<&str> = sets.in_memory().into_iter().map(|(d, _)| d).collect();
        kept.sort();
        assert_eq!(kept, ["cifar10", "cifar100-coarse"]);

        // A dataset that fails to load is held: its jobs are not claimed, the others' are.
        let Err(err) = sets.get(&crate::dataset::MNIST, cpu, &s, &none) else { panic!("MNIST is not there") };
        assert!(err.contains("MNIST") && err.contains("fetching it failed"), "{err}");
        let claimable = sets.claimable(&s);
        assert!(!claimable.contains(&"mnist") && claimable.contains(&"cifar10"), "{claimable:?}");
        // A change in the data directory ends the hold.
        std::fs::create_dir_all(dir.path().join("mnist")).unwrap();
        std::fs::write(dir.path().join("mnist/train-images-idx3-ubyte"), b"").unwrap();
        assert!(sets.claimable(&s).contains(&"mnist"));
    }
}
