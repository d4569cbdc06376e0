//! A run's checkpoint is one safetensors file, rewritten after every epoch: the weights by
//! layer name, the optimiser's buffers as `<buffer>.<name>` (SGD's `momentum.fc1.weight`,
//! Adam's `exp_avg.fc1.weight`; `train::optim::BUFFER_NAMES`), and in the safetensors
//! metadata the epoch, the spec, the metrics so far and the optimiser's step count. A
//! schedule's position is the epoch. The RNG and data-order state need no bytes of
//! their own: both are derived from (seed, epoch). A SHA-256 over the metadata and every
//! tensor's bytes (`sha256` in the metadata) is checked on every read: damaged bytes are
//! `CheckpointError::Damaged`, never weights to resume from.
//!
//! Where the bytes are kept is a `CheckpointStore`: a directory for `trainyard train`
//! (`DirStore`), the queue's database for the service (so any machine's worker can resume
//! a job; see `worker::group_db::JobStore`).

use super::metrics::EpochMetrics;
use super::optim::{self, MemberState};
use crate::network::Architecture;
use crate::spec::Spec;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use tch::Tensor;

pub const FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "trainyard-checkpoint-1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the stored bytes failed.
    #[error("{place}: {reason}")]
    Store { place: String, reason: String },
    /// The store would not take the write (for the service: the job's lease was lost).
    #[error("{place}: not written: {reason}")]
    Refused { place: String, reason: String },
    /// The bytes are not a checkpoint this version can read.
    #[error("{place} is unreadable: {reason}")]
    Corrupt { place: String, reason: String },
    /// The bytes are not the ones written: their checksum does not match (a bad disk, a
    /// bit flip, a truncated copy). Training starts again rather than resume from them.
    #[error("{place} is damaged: {reason}")]
    Damaged { place: String, reason: String },
    /// The checkpoint belongs to another experiment.
    #[error("{place} was written for another experiment spec; remove it or choose another directory")]
    OtherSpec { place: String },
}

/// Where a run's checkpoint is kept.
pub trait CheckpointStore {
    /// What error messages call it, e.g. "checkpoint var/runs/x/checkpoint.safetensors".
    fn place(&self) -> String;
    /// The latest checkpoint, or `None` before the first epoch ends.
    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError>;
    /// Replaces the checkpoint with the state after `epoch`.
    fn write(&self, epoch: u32, bytes: &[u8]) -> Result<(), CheckpointError>;
}

/// A checkpoint file in a directory, replaced atomically (temp file, fsync, rename, fsync dir).
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub fn new(dir: impl Into<PathBuf>) -> DirStore {
        DirStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn io_error(&self, e: std::io::Error) -> CheckpointError {
        CheckpointError::Store { place: self.place(), reason: e.to_string() }
    }
}

impl CheckpointStore for DirStore {
    fn place(&self) -> String {
        format!("checkpoint {}", self.path().display())
    }

    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        match std::fs::read(self.path()) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(e)),
        }
    }

    fn write(&self, _epoch: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|e| self.io_error(e))?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path())?;
            // The rename itself is durable only once the directory is synced.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| self.io_error(e))
    }
}

/// What a checkpoint holds for one model: its weights and optimiser state, each [P] in the
/// architecture's parameter order, the last finished epoch and the metrics so far.
pub struct Restored {
    pub epoch: u32,
    pub metrics: Vec<EpochMetrics>,
    pub weights: Tensor,
    /// The running statistics [S] (batch normalisation's), `None` for a network without.
    pub stats: Option<Tensor>,
    /// The buffers the spec's optimiser keeps (none for SGD without momentum).
    pub state: MemberState,
}

/// One member's state after an epoch, as `save` writes it: weights [P], running statistics
/// [S] and the optimiser's buffers, each in the architecture's order.
pub struct Saved<'a> {
    pub weights: &'a Tensor,
    pub stats: &'a Tensor,
    pub state: &'a MemberState,
}

/// The checksum of a checkpoint: its metadata (but the checksum itself) in key order, then
/// each tensor's name, shape and bytes, in name order.
fn checksum<'a>(
    meta: &HashMap<String, String>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [u8])>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut keys: Vec<&String> = meta.keys().filter(|k| k.as_str() != "sha256").collect();
    keys.sort();
    for k in keys {
        for part in [k.as_bytes(), &[0], meta[k].as_bytes(), &[0]] {
            h.update(part);
        }
    }
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, shape, bytes) in tensors {
        h.update(name.as_bytes());
        h.update([0]);
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let v: Vec<f32> = Vec::try_from(t.to_device(tch::Device::Cpu).flatten(0, -1)).expect("float tensor");
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the checkpoint for a finished `epoch` to `store`: one model's state, named by
/// `arch`'s parameters and statistics.
pub fn save(
    store: &dyn CheckpointStore,
    spec: &Spec,
    arch: &Architecture,
    epoch: u32,
    saved: &Saved,
    metrics: &[EpochMetrics],
) -> Result<(), CheckpointError> {
    let weights = f32_bytes(saved.weights);
    let stats = f32_bytes(saved.stats);
    let buffers: Vec<(&str, Vec<u8>)> =
        saved.state.buffers.iter().map(|(name, t)| (name.as_str(), f32_bytes(t))).collect();
    let mut blobs: Vec<(String, Vec<usize>, &[u8])> = Vec::new();
    let mut at = 0;
    for s in &arch.stats {
        let shape: Vec<usize> = s.shape.iter().map(|&d| d as usize).collect();
        blobs.push((s.name.clone(), shape, &stats[at * 4..(at + s.numel() as usize) * 4]));
        at += s.numel() as usize;
    }
    let mut at = 0;
    for p in &arch.params {
        let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
        let range = at * 4..(at + p.numel() as usize) * 4;
        blobs.push((p.name.clone(), shape.clone(), &weights[range.clone()]));
        for (buffer, bytes) in &buffers {
            blobs.push((format!("{buffer}.{}", p.name), shape.clone(), &bytes[range.clone()]));
        }
        at += p.numel() as usize;
    }
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("spec".to_string(), spec.to_json().to_string()),
        ("metrics".to_string(), serde_json::to_string(metrics).expect("metrics serialize")),
        ("optimizer_step".to_string(), saved.state.step.to_string()),
    ]);
    let sum = checksum(&meta, blobs.iter().map(|(name, shape, bytes)| (name.as_str(), shape.as_slice(), *bytes)));
    meta.insert("sha256".to_string(), sum);
    let views = blobs.iter().map(|(name, shape, bytes)| {
        (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes agree"))
    });
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| CheckpointError::Corrupt { place: store.place(), reason: e.to_string() })?;
    store.write(epoch, &bytes)
}

/// A checkpoint as read: its bytes and its metadata, the format checked.
struct Raw {
    place: String,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

/// Reads and checks checkpoint bytes: the format, and the checksum when it has one (those
/// written before checksums have none); `place` names them in errors.
fn parse(place: String, bytes: Vec<u8>) -> Result<Raw, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt { place: place.clone(), reason };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(format!("not a {FORMAT} file")));
    }
    if let Some(want) = meta.get("sha256") {
        let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let tensors = st.tensors();
        let got = checksum(&meta, tensors.iter().map(|(name, v)| (name.as_str(), v.shape(), v.data())));
        if &got != want {
            return Err(CheckpointError::Damaged {
                place,
                reason: format!("its SHA-256 is {got}, but {want} was written"),
            });
        }
    }
    Ok(Raw { place, bytes, meta })
}

/// Reads `store`'s checkpoint of `spec`, if there is one.
pub fn load(
    store: &dyn CheckpointStore,
    spec: &Spec,
    arch: &Architecture,
) -> Result<Option<Restored>, CheckpointError> {
    let Some(bytes) = store.read()? else { return Ok(None) };
    let Raw { place, bytes, meta } = parse(store.place(), bytes)?;
    let corrupt = |reason: String| CheckpointError::Corrupt { place: place.clone(), reason };
    let saved: serde_json::Value =
        serde_json::from_str(meta.get("spec").map_or("", String::as_str)).map_err(|e| corrupt(format!("spec: {e}")))?;
    // N.B.: compared as read today, so a checkpoint written before a spec field existed (a
    // named model's `layers`) still belongs to its job; and without `epochs`, so a run given
    // more epochs (a trial resumed after it stopped early) trains on from where it was.
    let without_epochs = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("epochs");
        }
        v
    };
    if Spec::parse(&saved).map(|s| without_epochs(s.to_json())).ok() != Some(without_epochs(spec.to_json())) {
        return Err(CheckpointError::OtherSpec { place });
    }
    let epoch: u32 = meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| corrupt("no epoch".into()))?;
    let metrics: Vec<EpochMetrics> = serde_json::from_str(meta.get("metrics").map_or("[]", String::as_str))
        .map_err(|e| corrupt(format!("metrics: {e}")))?;

    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let read = |name: &str, shape: &[i64], into: &mut Vec<f32>| -> Result<bool, CheckpointError> {
        let Ok(view) = st.tensor(name) else { return Ok(false) };
        let want: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        if view.dtype() != Dtype::F32 || view.shape() != want.as_slice() {
            return Err(corrupt(format!("{name} has shape {:?}, the model wants {:?}", view.shape(), want)));
        }
        into.extend(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        Ok(true)
    };
    let mut weights = Vec::new();
    for p in &arch.params {
        if !read(&p.name, &p.shape, &mut weights)? {
            return Err(corrupt(format!("{} is missing", p.name)));
        }
    }
    let mut stats = Vec::new();
    for s in &arch.stats {
        if !read(&s.name, &s.shape, &mut stats)? {
            return Err(corrupt(format!("{} is missing", s.name)));
        }
    }
    let stats = (!arch.stats.is_empty()).then(|| Tensor::from_slice(&stats));
    // N.B.: a buffer is resumed whole or not at all (a run checkpointed before its first
    // step has none, and its optimiser starts from zero as it would have).
    // N.B.: a checkpoint written before step counts were kept is SGD's, which never reads
    // its count; one from the metadata, or none.
    let step =
        meta.get("optimizer_step").map_or(Ok(0), |s| s.parse()).map_err(|e| corrupt(format!("optimizer_step: {e}")))?;
    let mut state = MemberState { buffers: Vec::new(), step };
    for buffer in crate::optimizer::state_buffers(spec) {
        let mut values = Vec::new();
        let mut all = true;
        for p in &arch.params {
            all &= read(&format!("{buffer}.{}", p.name), &p.shape, &mut values)?;
        }
        if all && !values.is_empty() {
            state.buffers.push((buffer.to_string(), Tensor::from_slice(&values)));
        }
    }
    Ok(Some(Restored { epoch, metrics, weights: Tensor::from_slice(&weights), stats, state }))
}

/// The trained weights of a checkpoint as a safetensors file of their own (no optimiser state),
/// with the epoch and the spec in its metadata; `place` names the checkpoint in errors.
pub fn export_weights(place: String, checkpoint: Vec<u8>) -> Result<(Vec<u8>, u32), CheckpointError> {
    let Raw { place, bytes, meta } = parse(place, checkpoint)?;
    let corrupt = |reason: String| CheckpointError::Corrupt { place: place.clone(), reason };
    let epoch: u32 = meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| corrupt("no epoch".into()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let is_state = |name: &str| name.split_once('.').is_some_and(|(first, _)| optim::BUFFER_NAMES.contains(&first));
    let mut weights: Vec<(String, TensorView)> = st.tensors().into_iter().filter(|(name, _)| !is_state(name)).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let out_meta = HashMap::from([
        ("format".to_string(), "trainyard-weights-1".to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("spec".to_string(), meta.get("spec").cloned().unwrap_or_default()),
    ]);
    let out = safetensors::tensor::serialize(weights, &Some(out_meta)).map_err(|e| corrupt(e.to_string()))?;
    Ok((out, epoch))
}
