//! The spec as a form sees it: `GET /spec` (its fields and layer kinds, from the same
//! tables `Spec::parse` checks) and `POST /spec/check` (a spec's network as planned — each
//! layer's output shape and parameters, the total, the memory estimate — and whether this
//! server's limits take it, without queueing anything).

use super::auth::CurrentUser;
use super::error::ApiError;
use super::json::JsonBody;
use super::{AppState, Route};
use crate::network::{Architecture, Layer, LayerSpec, Shape};
use crate::spec::{FieldError, Spec};
use axum::extract::State;
use axum::Json;
use serde::Serialize;

pub(super) fn routes() -> Vec<Route> {
    vec![Route::get("/spec", &[], get_spec), Route::post("/spec/check", check_spec)]
}

/// The spec's fields as the web form shows them (defaults, ranges, help), and the layer
/// kinds a list may use.
async fn get_spec(State(state): State<AppState>, _user: CurrentUser) -> Json<serde_json::Value> {
    let datasets: Vec<&str> = super::datasets::refresh(&state).await.iter().map(|d| d.name).collect();
    Json(crate::spec::field_docs_with(&datasets))
}

/// One planned layer as the check shows it.
#[derive(Serialize)]
struct PlannedLayer {
    /// Where it is in the list: `layers[7]`, `layers[7].residual[0]`.
    path: String,
    layer: serde_json::Value,
    /// What it gives per image: [C, H, W] or [features].
    output: Vec<i64>,
    /// Its trainable parameters (a residual block: its body's).
    parameters: i64,
}

#[derive(Serialize)]
struct Network {
    layers: Vec<PlannedLayer>,
    parameters: i64,
    /// The memory estimate the admission limit is held to, in MB (rounded up).
    memory_mb: i64,
    /// A short description, as lists and figures name a network of one's own.
    summary: String,
}

#[derive(Serialize)]
struct Checked {
    /// True when `POST /jobs` would queue this spec now (the queue's own limits aside).
    accepted: bool,
    /// Which of this server's limits it is over, each naming its field; empty when accepted.
    errors: Vec<FieldError>,
    /// The spec with its defaults filled in.
    spec: serde_json::Value,
    network: Network,
}

fn shape_vec(s: Shape) -> Vec<i64> {
    match s {
        Shape::Image { c, h, w } => vec![c, h, w],
        Shape::Flat(n) => vec![n],
    }
}

/// Parameters a planned layer owns, by the architecture's parameter table.
fn owned(arch: &Architecture, layer: &Layer) -> i64 {
    let two = |w: usize| arch.params[w].numel() + arch.params[w + 1].numel();
    match layer {
        Layer::Conv2d { weight, .. } | Layer::Linear { weight, .. } | Layer::BatchNorm { weight, .. } => two(*weight),
        Layer::Residual { layers, .. } => layers.iter().map(|l| owned(arch, l)).sum(),
        _ => 0,
    }
}

fn rows(
    arch: &Architecture,
    layers: &[Layer],
    shapes: &[Shape],
    specs: &[LayerSpec],
    path: &str,
    out: &mut Vec<PlannedLayer>,
) {
    for (i, ((layer, shape), spec)) in layers.iter().zip(shapes).zip(specs).enumerate() {
        let at = format!("{path}[{i}]");
        out.push(PlannedLayer {
            path: at.clone(),
            layer: spec.to_json(),
            output: shape_vec(*shape),
            parameters: owned(arch, layer),
        });
        if let (Layer::Residual { layers, shapes }, LayerSpec::Residual(body)) = (layer, spec) {
            rows(arch, layers, shapes, body, &format!("{at}.residual"), out);
        }
    }
}

/// Plans the spec's network and checks it as `POST /jobs` would; nothing is queued. A spec
/// that does not parse is a 422, as `POST /jobs` answers it; one over this server's limits
/// is planned, with `accepted` false and the limits' errors.
async fn check_spec(
    State(state): State<AppState>,
    _user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<Json<Checked>, ApiError> {
    let store = super::datasets::refresh(&state).await;
    let spec = Spec::parse_with_seed(&body, || 0).map_err(|e| ApiError::Invalid(e.0))?;
    let mut errors = state.limits.check(&spec);
    errors.extend(super::datasets::unavailable(&state, store, &[spec.data()]).await?);
    let arch = Architecture::of(&spec);
    let mut layers = Vec::new();
    rows(&arch, &arch.layers, &arch.shapes, &spec.layers, "layers", &mut layers);
    let bytes = arch.estimate(spec.batch_size.into(), crate::optimizer::values_per_parameter(&spec)).bytes();
    let network = Network {
        layers,
        parameters: arch.numel(),
        memory_mb: (bytes + (1 << 20) - 1) >> 20,
        summary: spec.network_name(),
    };
    let mut shown = spec.to_json();
    if body.get("seed").is_none_or(serde_json::Value::is_null) {
        // N.B.: the seed is drawn when the job is queued; a check draws none.
        shown["seed"] = serde_json::Value::Null;
    }
    Ok(Json(Checked { accepted: errors.is_empty(), errors, spec: shown, network }))
}
