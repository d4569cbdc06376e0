//! One checkpoint file per run, `checkpoint.safetensors`, rewritten atomically after every
//! epoch: the weights by layer name, the momentum buffers as `momentum.<name>`, and in the
//! safetensors metadata the epoch, the spec and the metrics so far. The RNG and data-order
//! state need no bytes of their own: both are derived from (seed, epoch).

use super::metrics::EpochMetrics;
use super::model::ParamSet;
use super::sgd::Sgd;
use crate::spec::Spec;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "trainyard-checkpoint-1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not a checkpoint this version can read.
    #[error("checkpoint {path} is unreadable: {reason}", path = .path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The checkpoint belongs to another experiment.
    #[error("checkpoint {path} was written for another experiment spec; remove it or choose another directory", path = .path.display())]
    OtherSpec { path: PathBuf },
}

/// What a checkpoint restores besides the tensors.
pub struct Restored {
    pub epoch: u32,
    pub metrics: Vec<EpochMetrics>,
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let v: Vec<f32> = Vec::try_from(t.to_device(tch::Device::Cpu).flatten(0, -1)).expect("float tensor");
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the checkpoint for a finished `epoch` (temp file, fsync, rename, fsync dir).
pub fn save(
    dir: &Path,
    spec: &Spec,
    epoch: u32,
    params: &ParamSet,
    opt: &Sgd,
    metrics: &[EpochMetrics],
) -> Result<(), CheckpointError> {
    let path = dir.join(FILE);
    let io = |source| CheckpointError::Io { path: path.clone(), source };
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for p in &params.params {
        let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
        blobs.push((p.name.clone(), shape.clone(), f32_bytes(&p.tensor)));
        if let Some(buf) = &opt.buf {
            blobs.push((format!("momentum.{}", p.name), shape, f32_bytes(&ParamSet::view_of(buf, p))));
        }
    }
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("spec".to_string(), spec.to_json().to_string()),
        ("metrics".to_string(), serde_json::to_string(metrics).expect("metrics serialize")),
    ]);
    let views = blobs.iter().map(|(name, shape, bytes)| {
        (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes agree"))
    });
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| CheckpointError::Corrupt { path: path.clone(), reason: e.to_string() })?;

    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    // The rename itself is durable only once the directory is synced.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// A checkpoint file as read: its bytes and its metadata, the format checked.
struct Raw {
    path: PathBuf,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

/// Reads `dir`'s checkpoint; `None` when there is none yet.
fn read(dir: &Path) -> Result<Option<Raw>, CheckpointError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.clone(), reason };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(format!("not a {FORMAT} file")));
    }
    Ok(Some(Raw { path, bytes, meta }))
}

/// Restores weights and momentum from `dir`'s checkpoint, if there is one.
pub fn load(dir: &Path, spec: &Spec, params: &ParamSet, opt: &mut Sgd) -> Result<Option<Restored>, CheckpointError> {
    let Some(Raw { path, bytes, meta }) = read(dir)? else { return Ok(None) };
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.clone(), reason };
    let saved: serde_json::Value =
        serde_json::from_str(meta.get("spec").map_or("", String::as_str)).map_err(|e| corrupt(format!("spec: {e}")))?;
    if saved != spec.to_json() {
        return Err(CheckpointError::OtherSpec { path });
    }
    let epoch: u32 = meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| corrupt("no epoch".into()))?;
    let metrics: Vec<EpochMetrics> = serde_json::from_str(meta.get("metrics").map_or("[]", String::as_str))
        .map_err(|e| corrupt(format!("metrics: {e}")))?;

    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let read = |name: &str, shape: &[i64]| -> Result<Option<Tensor>, CheckpointError> {
        let Ok(view) = st.tensor(name) else { return Ok(None) };
        let want: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        if view.dtype() != Dtype::F32 || view.shape() != want.as_slice() {
            return Err(corrupt(format!("{name} has shape {:?}, the model wants {:?}", view.shape(), want)));
        }
        let values: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Some(Tensor::from_slice(&values).view(shape)))
    };
    let mut momentum = Vec::new();
    for p in &params.params {
        let w = read(&p.name, &p.shape)?.ok_or_else(|| corrupt(format!("{} is missing", p.name)))?;
        momentum.push(read(&format!("momentum.{}", p.name), &p.shape)?);
        tch::no_grad(|| ParamSet::view_of(&params.flat, p).copy_(&w));
    }
    opt.buf = if momentum.iter().all(Option::is_some) && !momentum.is_empty() {
        let buf = params.flat.zeros_like();
        for (p, m) in params.params.iter().zip(&momentum) {
            ParamSet::view_of(&buf, p).copy_(m.as_ref().expect("checked"));
        }
        Some(buf)
    } else {
        None
    };
    Ok(Some(Restored { epoch, metrics }))
}

/// The trained weights of `dir`'s checkpoint as a safetensors file of their own (no momentum),
/// with the epoch and the spec in its metadata; `None` before the first epoch ends.
pub fn export_weights(dir: &Path) -> Result<Option<(Vec<u8>, u32)>, CheckpointError> {
    let Some(Raw { path, bytes, meta }) = read(dir)? else { return Ok(None) };
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.clone(), reason };
    let epoch: u32 = meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| corrupt("no epoch".into()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut weights: Vec<(String, TensorView)> =
        st.tensors().into_iter().filter(|(name, _)| !name.starts_with("momentum.")).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let out_meta = HashMap::from([
        ("format".to_string(), "trainyard-weights-1".to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("spec".to_string(), meta.get("spec").cloned().unwrap_or_default()),
    ]);
    let out = safetensors::tensor::serialize(weights, &Some(out_meta)).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((out, epoch)))
}
