//! /jobs: submit, list, show, cancel, and each job's metrics.

use super::error::ApiError;
use super::json::JsonBody;
use super::AppState;
use crate::queue::{self, CancelOutcome, Created, JobRow, NewJob};
use crate::spec::Spec;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// A job as the API shows it.
pub fn job_json(row: &JobRow) -> Value {
    let mut v = json!({
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "spec": serde_json::from_str::<Value>(&row.spec).unwrap_or(Value::Null),
        "parameters": row.parameters,
        "epochs_done": row.epochs_done,
        "epochs_total": row.epochs_total,
        "attempt": row.attempt,
        "created_at": rfc3339(Some(row.created_at)),
        "started_at": rfc3339(row.started_at),
        "finished_at": rfc3339(row.finished_at),
    });
    let obj = v.as_object_mut().expect("an object");
    match row.status.as_str() {
        "queued" => {
            obj.insert("queue_position".into(), json!(row.queue_position));
        }
        "running" => {
            obj.insert("device".into(), json!(row.device));
        }
        "failed" => {
            obj.insert("error".into(), json!(row.error));
        }
        _ => {}
    }
    v
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job with id {id}"))
}

/// Job ids are UUIDs; anything else cannot name a job.
fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id).map(|u| u.to_string()).map_err(|_| not_found(id))
}

async fn load(state: &AppState, id: &str) -> Result<JobRow, ApiError> {
    let id = parse_id(id)?;
    queue::get_job(&state.pool, &id).await?.ok_or_else(|| not_found(&id))
}

pub async fn create_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 200 => Some(k.to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "bad_idempotency_key",
                    "Idempotency-Key",
                    "Idempotency-Key must be 1 to 200 visible ASCII characters",
                ))
            }
        },
    };
    let spec = Spec::parse(&body).map_err(|e| ApiError::Invalid(e.0))?;
    let spec_json = spec.to_json().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let parameters = crate::train::parameter_count(&spec);
    let created = queue::create_job(
        &state.pool,
        NewJob {
            id: &id,
            name: spec.name.as_deref(),
            spec: &spec_json,
            parameters,
            epochs_total: spec.epochs.into(),
            idempotency_key: key.as_deref(),
            request_hash: &hash,
            now: queue::now_ms(),
        },
    )
    .await?;
    let (status, row) = match created {
        Created::New(row) => {
            state.wake.notify_one();
            (StatusCode::CREATED, row)
        }
        Created::Existing(row) => (StatusCode::OK, row),
        Created::KeyConflict => {
            return Err(ApiError::Unprocessable(
                "this Idempotency-Key was already used with a different request body; use a new key for a new job"
                    .into(),
            ))
        }
    };
    let location = format!("/jobs/{}", row.id);
    Ok((status, [(header::LOCATION, location)], Json(job_json(&row))).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_jobs(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.status {
        if !queue::STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "bad_query",
                "status",
                format!("status must be one of {}, got {s:?}", queue::STATUSES.join(", ")),
            ));
        }
    }
    let limit = match &q.limit {
        None => 50,
        Some(l) => l.parse::<i64>().ok().filter(|l| (1..=200).contains(l)).ok_or_else(|| {
            ApiError::bad_request("bad_query", "limit", format!("limit must be an integer from 1 to 200, got {l:?}"))
        })?,
    };
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
            ApiError::bad_request("bad_query", "cursor", "cursor must be a next_cursor value from a previous page")
        })?),
    };
    let rows = queue::list_jobs(&state.pool, q.status.as_deref(), limit, before).await?;
    let next = if rows.len() as i64 == limit { rows.last().map(|r| r.seq.to_string()) } else { None };
    Ok(Json(json!({"jobs": rows.iter().map(job_json).collect::<Vec<_>>(), "next_cursor": next})))
}

pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&load(&state, &id).await?)))
}

pub async fn cancel_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    match queue::cancel_job(&state.pool, &id, queue::now_ms()).await? {
        CancelOutcome::NotFound => Err(not_found(&id)),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::Conflict(format!(
            "job {id} has already finished ({status}); only queued or running jobs can be cancelled"
        ))),
        CancelOutcome::Cancelled { was_running } => {
            if was_running {
                // Here it stops at once; a worker in another process notices at its next heartbeat.
                state.running.stop(&id);
            }
            Ok(Json(job_json(&load(&state, &id).await?)))
        }
    }
}

#[derive(Deserialize)]
pub struct MetricsQuery {
    since: Option<String>,
}

pub async fn get_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = match &q.since {
        None => 0,
        Some(s) => s.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
            ApiError::bad_request("bad_query", "since", format!("since must be an epoch number >= 0, got {s:?}"))
        })?,
    };
    let row = load(&state, &id).await?;
    let epochs: Vec<Value> = queue::get_metrics(&state.pool, &row.id, since)
        .await?
        .iter()
        .filter_map(|m| serde_json::from_str(m).ok())
        .collect();
    Ok(Json(json!({
        "job_id": row.id,
        "status": row.status,
        "epochs_total": row.epochs_total,
        "epochs": epochs,
    })))
}
