//! Plots on request: one job's curves, or several jobs on one chart, as PNG or SVG, with an
//! ETag so a client polling a finished job gets 304.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::AppState;
use super::{Route, PLOT_QUERY};
use crate::job::EpochMetrics;
use crate::plot::{self, Comparison, Figure, Format, Metric, Series, YAxis};
use crate::queue::{self, JobRow};
use crate::spec::Spec;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
pub struct PlotQuery {
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    width: Option<String>,
    #[serde(default)]
    height: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    jobs: Option<String>,
}

pub(super) struct Options {
    metric: Metric,
    format: Format,
    width: u32,
    height: u32,
    y_axis: YAxis,
}

fn choice<T>(
    field: &str,
    given: Option<&str>,
    default: T,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<T, ApiError> {
    match given {
        None => Ok(default),
        Some(s) => parse(s).ok_or_else(|| {
            ApiError::bad_request("bad_query", field, format!("{field} must be one of {}, got {s:?}", names.join(", ")))
        }),
    }
}

fn size(field: &str, given: Option<&str>, default: u32, (lo, hi): (u32, u32)) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(s) => s.parse::<u32>().ok().filter(|v| (lo..=hi).contains(v)).ok_or_else(|| {
            ApiError::bad_request(
                "bad_query",
                field,
                format!("{field} must be an integer from {lo} to {hi} pixels, got {s:?}"),
            )
        }),
    }
}

pub(super) fn options(q: &PlotQuery) -> Result<Options, ApiError> {
    Ok(Options {
        metric: choice("metric", q.metric.as_deref(), Metric::All, Metric::parse, &Metric::NAMES)?,
        format: choice("format", q.format.as_deref(), Format::Png, Format::parse, &Format::NAMES)?,
        width: size("width", q.width.as_deref(), 1000, plot::WIDTHS)?,
        height: size("height", q.height.as_deref(), 700, plot::HEIGHTS)?,
        y_axis: choice("y", q.y.as_deref(), YAxis::Fit, YAxis::parse, &YAxis::NAMES)?,
    })
}

/// A job with its epochs, ready to draw.
pub(super) struct Loaded {
    pub row: JobRow,
    pub spec: Value,
    pub epochs: Vec<EpochMetrics>,
    /// The class's test-accuracy band behind its curve ("compare me with the class").
    pub band: Option<Vec<crate::plot::class::BandPoint>>,
}

async fn load(state: &AppState, user: &CurrentUser, id: &str) -> Result<Loaded, ApiError> {
    let row = super::jobs::load(state, user, id).await?;
    let epochs = queue::get_metrics(&state.pool, &row.id, 0).await?;
    Ok(Loaded::new(row, epochs))
}

impl Loaded {
    pub fn new(row: JobRow, epochs: Vec<EpochMetrics>) -> Loaded {
        let spec = row.spec.as_ref().map_or(Value::Null, Spec::to_json);
        Loaded { row, spec, epochs, band: None }
    }
}

fn etag(opts: &Options, jobs: &[Loaded], labels: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}{:?}{}x{}{:?}", opts.metric, opts.format, opts.width, opts.height, opts.y_axis));
    for (j, label) in jobs.iter().zip(labels) {
        h.update(&j.row.id);
        h.update(j.row.status.as_str());
        // N.B.: the texts as stored: a spec's JSON and each epoch's.
        h.update(j.spec.to_string());
        h.update(label);
        for m in &j.epochs {
            h.update(serde_json::to_string(m).unwrap_or_default());
        }
        for b in j.band.iter().flatten() {
            h.update(format!("{}:{}:{}:{}:{}", b.epoch, b.q1, b.median, b.q3, b.n));
        }
    }
    format!("\"{}\"", &hex::encode(h.finalize())[..32])
}

/// Renders off the async threads, with the ETag/304 dance.
pub(super) async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    opts: Options,
    jobs: Vec<Loaded>,
    labels: Vec<String>,
    title: String,
    subtitle: String,
) -> Result<Response, ApiError> {
    let tag = etag(&opts, &jobs, &labels);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let format = opts.format;
    let slot = state.render_slot()?;
    let bytes = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let epochs_total = jobs.iter().map(|j| j.row.epochs_total as u32).max().unwrap_or(1);
        let statuses: Vec<&str> = jobs.iter().map(|j| j.row.status.as_str()).collect();
        let fig = Figure {
            title,
            subtitle,
            series: jobs
                .iter()
                .zip(labels)
                .map(|(j, label)| Series { band: j.band.clone(), ..Series::of_spec(label, &j.epochs, &j.spec) })
                .collect(),
            metric: opts.metric,
            epochs_total,
            empty_note: format!("no epoch finished yet ({})", statuses.join(", ")),
            width: opts.width,
            height: opts.height,
            y_axis: opts.y_axis,
        };
        plot::render(&fig, format)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::ETAG, tag),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        bytes,
    )
        .into_response())
}

pub async fn plot_job(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<PlotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let opts = options(&q)?;
    let job = load(&state, &user, &id).await?;
    let r = &job.row;
    let name = r.name.clone().unwrap_or_else(|| format!("job {}", &r.id[..8]));
    // N.B.: "succeeded" alone would read as a result; a diverged run says so first.
    let status = match r.diverged_at {
        Some(n) => format!("{}, diverged at epoch {n}", r.status),
        None => r.status.to_string(),
    };
    let title = format!("{name} — {status} ({} of {} epochs)", job.epochs.len(), r.epochs_total);
    let subtitle =
        format!("{} · seed={} · {} parameters", plot::settings_line(&job.spec), job.spec["seed"], r.parameters);
    let label = name.clone();
    respond(&state, &headers, opts, vec![job], vec![label], title, subtitle).await
}

/// The job ids `?jobs=` names: 1 to `plot::MAX_SERIES`, each once.
fn chosen(jobs: Option<&str>) -> Result<Vec<&str>, ApiError> {
    let mut ids: Vec<&str> = jobs.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    if ids.is_empty() || ids.len() > plot::MAX_SERIES {
        return Err(ApiError::bad_request(
            "bad_query",
            "jobs",
            format!("jobs must list 1 to {} job ids separated by commas, got {}", plot::MAX_SERIES, ids.len()),
        ));
    }
    Ok(ids)
}

/// How a comparison of `jobs` tells them apart.
fn comparison(jobs: &[Loaded]) -> Comparison {
    let described: Vec<(Option<String>, Value)> = jobs.iter().map(|j| (j.row.name.clone(), j.spec.clone())).collect();
    plot::compare(&described)
}

/// A comparison's title: how many jobs, and what varies.
fn compare_title(n: usize, c: &Comparison) -> String {
    match c.varying.as_slice() {
        [] => format!("{n} jobs compared"),
        keys => format!("{n} jobs: {}", keys.join(", ")),
    }
}

pub async fn plot_jobs(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<PlotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let opts = options(&q)?;
    let mut jobs = Vec::new();
    for id in chosen(q.jobs.as_deref())? {
        jobs.push(load(&state, &user, id).await?);
    }
    let c = comparison(&jobs);
    let title = compare_title(jobs.len(), &c);
    respond(&state, &headers, opts, jobs, c.labels, title, c.shared).await
}

/// `GET /compare`: how `/plot` tells the jobs apart (its legend's labels, its title and the
/// settings they share), so the page's own chart names the jobs as the server's figure does.
pub async fn compare_jobs(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<CompareQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    // N.B.: labels come from the specs alone: no job's epochs are read.
    let mut jobs = Vec::new();
    for id in chosen(q.jobs.as_deref())? {
        jobs.push(Loaded::new(super::jobs::load(&state, &user, id).await?, Vec::new()));
    }
    let c = comparison(&jobs);
    let title = compare_title(jobs.len(), &c);
    let listed: Vec<Value> =
        jobs.iter().zip(&c.labels).map(|(j, label)| serde_json::json!({"id": j.row.id, "label": label})).collect();
    Ok(axum::Json(serde_json::json!({"title": title, "shared": c.shared, "varying": c.varying, "jobs": listed})))
}

#[derive(Debug, Deserialize)]
pub struct CompareQuery {
    #[serde(default)]
    jobs: Option<String>,
}

/// The figures of jobs, and how a comparison names them.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::get("/jobs/{id}/plot", PLOT_QUERY, plot_job),
        Route::get("/plot", &["jobs", "metric", "format", "width", "height", "y"], plot_jobs),
        Route::get("/compare", &["jobs"], compare_jobs),
    ]
}
