//! The OS thread that trains for one worker: it takes each group the worker's async side
//! claims and runs it through `GroupDb`, and outlives any one group (a panic outside
//! training fails that group's members, not the worker).

use super::group_db::{GroupDb, Thread};
use super::Shared;
use crate::job::Progress;
use crate::queue::{Claimed, Lease};
use crate::train::{GroupHost, TrainError};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tch::Device;
use tokio::sync::oneshot;

/// A running member's lease and stop flag, which the worker's async side renews and raises.
#[derive(Clone)]
pub(super) struct MemberLease {
    pub(super) lease: Lease,
    pub(super) stop: Arc<AtomicBool>,
    /// Where it is inside its epoch, as the training thread last said; the heartbeat takes
    /// it to the database.
    pub(super) progress: Arc<Mutex<Option<Progress>>>,
}

/// The leases of the group a worker trains; its training thread adds and removes members.
pub(super) type Leases = Arc<Mutex<Vec<MemberLease>>>;

/// A claimed group handed to a training thread.
pub(super) struct Assignment {
    pub(super) group_id: String,
    pub(super) first: Vec<Claimed>,
    pub(super) leases: Leases,
    pub(super) done: oneshot::Sender<()>,
}

/// The OS thread that trains for one worker.
pub(super) struct Trainer {
    pub(super) jobs: std::sync::mpsc::Sender<Assignment>,
}

impl Trainer {
    pub(super) fn spawn(shared: Arc<Shared>, device: Device, name: String) -> Trainer {
        let (tx, rx) = std::sync::mpsc::channel::<Assignment>();
        let at = Thread { shared, handle: tokio::runtime::Handle::current(), worker: name.clone(), device };
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let group_key = job.first.first().and_then(|c| c.group_key.clone());
                    let mut host = GroupDb::new(&at, job.group_id, group_key, job.leases);
                    // N.B.: the thread must outlive any one group; a panic outside training
                    // (loading the data onto a device, say) fails its members, not the worker.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.run(job.first)));
                    if ran.is_err() {
                        for key in host.member_keys() {
                            let why = "the training thread panicked; see the server log".into();
                            host.member_done(key, Err(TrainError::Torch(why)));
                        }
                    }
                    let _ = job.done.send(());
                }
            })
            .expect("spawning a training thread");
        Trainer { jobs: tx }
    }
}
