//! The HTTP API. Each resource's module lists its routes (`routes()`: method, path, query
//! parameters, handler); `router` builds the API from them, and a test holds them against
//! openapi.yaml.

pub mod access;
pub mod auth;
pub mod class;
pub mod datasets;
pub mod error;
pub mod events;
pub mod jobs;
pub mod json;
pub mod plots;
pub mod serve;
pub mod spec;
pub mod sweeps;
pub mod telemetry;
pub mod users;
pub mod web;

use crate::hub::Hub;
use crate::queue::Pool;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post, MethodRouter};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Stop flags of the jobs this process trains (an immediate cancel), the idle workers'
    /// wake-up, and word of changes for the event streams.
    pub hub: Arc<Hub>,
    pub limits: Limits,
    pub limiter: Arc<auth::RateLimiter>,
    /// Workers of this process, for the queue's estimates.
    pub workers: usize,
    /// A worker silent this long is lost: not counted, shown `lost`.
    pub live_window: Duration,
    /// Lost and stopped workers are listed this long.
    pub forget_workers: Duration,
    /// The first admin's token file, rewritten when the token it holds is replaced.
    pub admin_token_file: std::path::PathBuf,
    /// Figures and reports drawn at once (CPU and memory per render); one more is a 429.
    pub renders: Renders,
    /// The data directory of this process's workers (`None` when it runs none: the data is
    /// then another machine's), so readiness knows the data is missing before a job does.
    pub data_dir: Option<std::path::PathBuf>,
    /// The dataset store this server names datasets from (`--data-dir`): the lab's imports
    /// are read from it, and a spec's dataset must be there (or fetchable) to be queued.
    pub store: std::path::PathBuf,
    /// What students see of the class: the anonymous band (or not), and the fewest other
    /// students it is drawn from.
    pub class: ClassSettings,
    /// Each assignment's submissions as last read, with what the queue looked like then
    /// (its last event, its sweeps): read again only when that changed.
    pub class_cache: ClassCache,
}

/// See `AppState::class_cache`.
pub type ClassCache =
    Arc<std::sync::Mutex<std::collections::HashMap<String, ((i64, i64), Arc<Vec<crate::class::Submission>>)>>>;

/// `TRAINYARD_CLASS_BAND` and `TRAINYARD_CLASS_MIN_STUDENTS`.
#[derive(Debug, Clone, Copy)]
pub struct ClassSettings {
    pub band: bool,
    pub min_students: usize,
}

/// Figures and reports this server draws at once.
pub const MAX_RENDERS: usize = 4;

/// The places to draw figures and reports in: at most `n` at once, whoever asks.
#[derive(Clone)]
pub struct Renders {
    n: usize,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Renders {
    pub fn new(n: usize) -> Renders {
        Renders { n, slots: Arc::new(tokio::sync::Semaphore::new(n)) }
    }

    /// A place to draw one, held until dropped; a 429 (retry in a second) while all are taken.
    pub fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, error::ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| error::ApiError::TooMany {
            message: format!("the server is drawing {} figures or reports already; retry in a second", self.n),
            retry_after: Some(1),
        })
    }
}

impl AppState {
    /// A place to draw a figure or a report (`Renders::slot`).
    pub fn render_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, error::ApiError> {
        self.renders.slot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_past_the_limit_is_a_429_with_retry_after_until_one_ends() {
        let renders = Renders::new(2);
        let (a, _b) = (renders.slot().unwrap(), renders.slot().unwrap());
        let Err(error::ApiError::TooMany { message, retry_after }) = renders.slot() else { panic!("a third slot") };
        assert_eq!(retry_after, Some(1));
        assert!(message.contains("drawing 2 figures"), "{message}");
        drop(a);
        assert!(renders.slot().is_ok(), "a slot frees when its render ends");
    }
}

/// What one user may ask of a shared box.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_queued: i64,
    pub max_epochs: u32,
    /// Most trainable parameters of one job's model.
    pub max_parameters: i64,
    /// Most memory one job may need (its estimate: weights, gradients, momentum, activations).
    pub max_job_memory_mb: i64,
    /// Most event streams one user may have open at once.
    pub max_streams: usize,
}

impl Limits {
    /// What in `spec` this server will not run, each naming its field, the estimate and the
    /// limit; empty when it fits. No tensor is made (see `crate::network`).
    pub fn check(&self, spec: &crate::spec::Spec) -> Vec<crate::spec::FieldError> {
        use crate::spec::{FieldError, ModelKind};
        let mut errors = Vec::new();
        if spec.epochs > self.max_epochs {
            errors.push(FieldError {
                field: "epochs".into(),
                message: format!(
                    "this server allows at most {} epochs per job (TRAINYARD_MAX_EPOCHS_PER_JOB), got {}",
                    self.max_epochs, spec.epochs
                ),
            });
        }
        let e = crate::network::Architecture::of(spec)
            .estimate(spec.batch_size.into(), crate::optimizer::values_per_parameter(spec));
        let mb = |b: i64| (b + (1 << 20) - 1) >> 20;
        let shape_field = match spec.model {
            ModelKind::Mlp => "hidden",
            ModelKind::Custom => "layers",
            _ => "model",
        };
        if e.parameters > self.max_parameters {
            errors.push(FieldError {
                field: shape_field.into(),
                message: format!(
                    "this model has {} trainable parameters; this server allows at most {} per job \
                     (TRAINYARD_MAX_PARAMETERS): choose smaller (or fewer) layers",
                    e.parameters, self.max_parameters
                ),
            });
        } else if mb(e.bytes()) > self.max_job_memory_mb {
            let field = if e.activation_bytes > e.state_bytes { "batch_size" } else { shape_field };
            errors.push(FieldError {
                field: field.into(),
                message: format!(
                    "this job needs about {} MB to train ({} MB of weights, gradients and momentum, {} MB of \
                     activations at batch size {}); this server allows at most {} MB per job \
                     (TRAINYARD_MAX_JOB_MEMORY_MB): choose a smaller batch size or smaller layers",
                    mb(e.bytes()),
                    mb(e.state_bytes),
                    mb(e.activation_bytes),
                    spec.batch_size,
                    self.max_job_memory_mb
                ),
            });
        }
        errors
    }
}

/// The OpenAPI document, served as is.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// One route: its method and path as openapi.yaml writes them, the query parameters it
/// takes (any other is a 400), and its handler. Each resource's module lists its own
/// (`routes()`); `router` builds the whole API from them and a test holds them against
/// openapi.yaml.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub query: &'static [&'static str],
    handler: MethodRouter<AppState>,
}

impl Route {
    pub(crate) fn get<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        query: &'static [&'static str],
        h: H,
    ) -> Route {
        Route { method: "get", path, query, handler: get(h) }
    }

    pub(crate) fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
        Route { method: "post", path, query: &[], handler: post(h) }
    }

    pub(crate) fn patch<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
        Route { method: "patch", path, query: &[], handler: patch(h) }
    }
}

/// The query parameters of the plot routes.
pub(crate) const PLOT_QUERY: &[&str] = &["metric", "format", "width", "height", "y"];

/// Every route of the API, resource by resource.
pub fn routes() -> Vec<Route> {
    let own = vec![
        Route::get("/healthz", &[], healthz),
        Route::get("/readyz", &[], readyz),
        Route::get("/openapi.yaml", &[], openapi),
        Route::get("/metrics", &[], telemetry::scrape),
    ];
    [
        own,
        spec::routes(),
        datasets::routes(),
        jobs::routes(),
        events::routes(),
        plots::routes(),
        sweeps::routes(),
        class::routes(),
        users::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Holds the query string to the body's standard: an unknown parameter (a typo such as
/// `?stauts=`) or one given twice is a 400 in the JSON error shape naming what is allowed,
/// never silently ignored.
fn check_query(
    (method, path, allowed): (&str, &str, &[&str]),
    req: &axum::extract::Request,
) -> Result<(), error::ApiError> {
    let mut seen: Vec<String> = Vec::new();
    for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let raw = pair.split('=').next().unwrap_or_default();
        let key = percent_decode(raw);
        let problem = if !allowed.contains(&key.as_str()) {
            Some(if allowed.is_empty() {
                format!("unknown query parameter {key:?}: {} {} takes none", method.to_uppercase(), path)
            } else {
                format!("unknown query parameter {key:?}; allowed: {}", allowed.join(", "))
            })
        } else if seen.contains(&key) {
            Some(format!("query parameter {key:?} is given twice"))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(error::ApiError::BadRequest { code: "bad_query", message, field: Some(key) });
        }
        seen.push(key);
    }
    Ok(())
}

/// A query key with its %XX escapes and '+' decoded (keys are ASCII names; anything else
/// is kept as it came, and then is unknown anyway).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Longest URI the API reads (hyper itself refuses, without a body, past 64 KiB).
pub const URI_LIMIT: usize = 8 << 10;
/// Longest a request may take to produce its response's head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits at the edge, answered in the JSON error shape: a URI over `URI_LIMIT` (414)
/// and a response not begun within `REQUEST_TIMEOUT` (408).
async fn edge_limits(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > URI_LIMIT {
        return error::ApiError::UriTooLong(URI_LIMIT).into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Timeout(REQUEST_TIMEOUT.as_secs()).into_response(),
    }
}

/// While the database file is gone or replaced (`storage::Storage::lost`), every request
/// that reads or writes it is refused (503, saying why) rather than acknowledged into a file
/// nobody will read again; liveness, readiness and the page's own files still answer.
async fn refuse_when_lost(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let exempt = matches!(path, "/healthz" | "/readyz" | "/openapi.yaml" | "/") || path.starts_with("/ui/");
    match state.hub.storage.is_lost() {
        Some(why) if !exempt => error::ApiError::Unavailable(format!("{why}; nothing was changed")).into_response(),
        _ => next.run(req).await,
    }
}

/// Every error the router answers is in the JSON error shape, including the few that axum
/// or tower-http make themselves (a path segment that is not UTF-8, say): their text becomes
/// the message. (What hyper refuses before a request exists cannot be JSON: openapi.yaml
/// lists those.)
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() { reason.to_string() } else { text };
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

pub fn router(state: AppState) -> Router {
    // A path given twice (GET and POST /jobs) gets its method routers merged by axum.
    let mut router = Router::new();
    for route in routes() {
        let rule = (route.method, route.path, route.query);
        let checked = route.handler.route_layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match check_query(rule, &req) {
                    Ok(()) => next.run(req).await,
                    Err(e) => e.into_response(),
                }
            },
        ));
        router = router.route(route.path, checked);
    }
    router
        .merge(web::router())
        .route_layer(axum::middleware::from_fn(access::note_route))
        .fallback(|| async { error::ApiError::NotFound("no such route; see GET /openapi.yaml".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            error::ApiError::MethodNotAllowed(format!(
                "{method} is not allowed on {}; see GET /openapi.yaml for each route's methods",
                uri.path()
            ))
        })
        .layer(DefaultBodyLimit::max(json::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_when_lost))
        .layer(axum::middleware::from_fn(edge_limits))
        .layer(axum::middleware::from_fn(access::access_log))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: whether the box can train now. 503 with the reasons while the database does
/// not answer, the box has a problem of its own (its data), or no worker is alive.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    let mut reasons: Vec<String> = Vec::new();
    let storage = &state.hub.storage;
    if let Some(lost) = storage.is_lost() {
        reasons.push(lost);
    } else {
        // N.B.: readiness means the box can take work: a small real write says whether it
        // can (a full disk fails it, as it fails a submission).
        let probe = crate::queue::problems::probe_write(&state.pool).await;
        storage.outcome("checking readiness", &probe);
        if let Err(e) = probe {
            reasons.push(if e.is_disk_full() {
                "the database cannot be written: its disk is full or refuses writes (free space; the box recovers \
                     within seconds)"
                    .to_string()
            } else {
                "the database does not take writes".to_string()
            });
        }
    }
    // N.B.: a dataset's problem holds only its own jobs: the box is not ready while a
    // queued job waits on it, and is for everyone else's (a fetch that failed once for a
    // job since cancelled keeps no one waiting).
    let problems = crate::queue::problems::list_problems(&state.pool).await;
    let queued = crate::queue::queued_datasets(&state.pool).await;
    match problems.and_then(|p| Ok((p, queued?))) {
        Ok((problems, queued)) => reasons.extend(
            problems
                .into_iter()
                .filter(|p| p.dataset().is_none_or(|d| queued.iter().any(|q| q == d)))
                .map(|p| p.message),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            reasons.push("the database does not answer".into());
        }
    }
    if let Some(dir) = &state.data_dir {
        let data = crate::dataset::DEFAULT;
        let dir = dir.clone();
        // N.B.: the default dataset's absence matters while no dataset is here at all (a
        // new box); a lab that trains only MNIST or its own images is ready without it.
        let missing = tokio::task::spawn_blocking(move || {
            let any_here = crate::dataset::all().into_iter().any(|d| crate::dataset::check_present(d, &dir).is_ok());
            if any_here {
                return None;
            }
            crate::train::data::check_present(data, &dir).err().map(|e| match e {
                crate::train::data::DataError::Missing { .. } if crate::fetch::is_empty_dir(&data.locate(&dir)) => {
                    format!(
                        "{} is not in {} yet: the first job fetches it ({}), or run `trainyard data fetch`",
                        data.title,
                        data.home(&dir).display(),
                        data.where_to_get
                    )
                }
                e => e.to_string(),
            })
        })
        .await
        .unwrap_or(None);
        // N.B.: a problem the workers recorded says the same in more detail; one is enough.
        if let Some(why) = missing.filter(|_| reasons.is_empty()) {
            reasons.push(why);
        }
    }
    if reasons.is_empty() {
        match jobs::live_workers(&state).await {
            Ok(0) => {
                reasons.push("no worker is alive: start `trainyard worker` or `trainyard serve` with workers".into())
            }
            Ok(_) => {}
            Err(_) => reasons.push("the database does not answer".into()),
        }
    }
    if reasons.is_empty() {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "reasons": reasons})),
        )
            .into_response()
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}
