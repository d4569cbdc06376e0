//! `GET /metrics`: the Prometheus metrics, for admins' tokens (Prometheus sends one with
//! its `authorization` scrape setting).

use super::auth::CurrentUser;
use super::error::ApiError;
use super::AppState;
use crate::job::{JobStatus, Progress};
use crate::queue;
use crate::telemetry::BoxView;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The OpenMetrics text type, which Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4, for any other client (curl, promtool, older scrapers).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the `Accept` header asks for OpenMetrics (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,…;q=0.5,text/plain;version=0.0.4;q=…`); any
/// other client gets the plain text format.
fn wants_openmetrics(headers: &axum::http::HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let q = |kind: &str| -> f32 {
        accept
            .split(',')
            .filter(|part| part.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(kind)))
            .map(|part| {
                part.split(';')
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|v| v.trim().parse::<f32>().ok())
                    .unwrap_or(1.0)
            })
            .fold(0.0, f32::max)
    };
    let om = q("application/openmetrics-text");
    om > 0.0 && om >= q("text/plain")
}

/// This process's counters and, with `with_box`, the box's state from the database.
pub async fn render(state: &AppState, with_box: bool) -> Result<String, ApiError> {
    let t = &state.hub.telemetry;
    if with_box {
        let now = queue::now_ms();
        let (counts, oldest, progress) = queue::box_state(&state.pool).await?;
        let live_since = now - state.live_window.as_millis() as i64;
        let workers = queue::workers::list_workers(&state.pool, now - 3_600_000).await?;
        let mut by: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for w in &workers {
            *by.entry((w.device.clone(), w.state(live_since).to_string())).or_default() += 1;
        }
        let fresh = |p: &Progress| now - p.at_ms < 10 * state.live_window.as_millis() as i64;
        t.set_box(&BoxView {
            jobs: counts.into_iter().filter_map(|(s, n)| s.parse::<JobStatus>().ok().map(|s| (s, n))).collect(),
            workers: by.into_iter().map(|((d, s), n)| (d, s, n)).collect(),
            oldest_queued_seconds: oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0),
            samples_per_second: progress
                .iter()
                .filter(|p| fresh(p))
                .map(|p| p.samples_per_second)
                // N.B.: an empty f64 sum is -0.0, which Prometheus shows as "-0".
                .fold(0.0, |a, b| a + b),
        });
        t.set_streams(state.hub.open_streams());
    }
    Ok(t.render())
}

pub async fn scrape(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, &user, &headers, true).await
}

/// `trainyard worker --metrics-bind`'s `GET /metrics`: that process's own counters.
pub async fn scrape_process(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, &user, &headers, false).await
}

async fn answer(
    state: &AppState,
    user: &CurrentUser,
    headers: &axum::http::HeaderMap,
    with_box: bool,
) -> Result<Response, ApiError> {
    if !user.0.is_admin() {
        return Err(ApiError::Forbidden("only admins read the metrics (give Prometheus an admin's token)".into()));
    }
    let body = render(state, with_box).await?;
    Ok(if wants_openmetrics(headers) {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    } else {
        ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], crate::telemetry::to_text_format(&body)).into_response()
    })
}
