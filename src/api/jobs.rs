//! /jobs: submit, list, show, cancel, and each job's metrics.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::json::JsonBody;
use super::AppState;
use super::Route;
use crate::job::JobStatus;
use crate::queue::{self, CancelOutcome, Created, JobRow, NewJob, OverLimit};
use crate::schedule::{self, Planned};
use crate::spec::Spec;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub(crate) fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// The queue's plan now: each queued job's position and estimated start.
pub async fn plan(state: &AppState) -> Result<HashMap<String, Planned>, ApiError> {
    let entries = queue::queue_entries(&state.pool).await?;
    plan_for(state, &entries).await
}

/// The plan of queue entries already read.
async fn plan_for(state: &AppState, entries: &[queue::QueueEntry]) -> Result<HashMap<String, Planned>, ApiError> {
    Ok(schedule::plan(entries, &history(state).await?, live_workers(state).await?, queue::now_ms()))
}

/// Seconds per epoch of each (model, batch size) that ran on this box: the queue's estimates.
pub(crate) async fn history(state: &AppState) -> Result<schedule::History, ApiError> {
    Ok(queue::epoch_seconds_by_setup(&state.pool).await?.into_iter().map(|(m, b, s)| ((m, b), s)).collect())
}

/// Workers serving the queue now: those of every process that said it was alive within the
/// live window (three reports), and at least this process's own.
pub(crate) async fn live_workers(state: &AppState) -> Result<usize, ApiError> {
    let since = queue::now_ms() - state.live_window.as_millis() as i64;
    let seen = queue::workers::count_live(&state.pool, since).await?;
    Ok(state.workers.max(seen as usize))
}

/// A job as the API shows it; `plan` supplies the queue position of a queued job.
pub fn job_json(row: &JobRow, plan: &HashMap<String, Planned>) -> Value {
    let mut v = json!({
        "id": row.id,
        "name": row.name,
        "owner": row.owner,
        "status": row.status,
        // N.B.: a job whose loss became non-finite may still have succeeded (it ran its
        // epochs); its numbers mean little, and every view says so.
        "diverged": row.diverged_at.is_some(),
        "diverged_at": row.diverged_at,
        "priority": row.priority,
        "spec": row.spec.as_ref().map(Spec::to_json),
        "network": row.spec.as_ref().map(Spec::network_name),
        "parameters": row.parameters,
        "epochs_done": row.epochs_done,
        "epochs_total": row.epochs_total,
        "attempt": row.attempt,
        "worker": row.worker,
        "group": row.group_id.as_ref().map(|id| json!({"id": id, "size": row.group_size})),
        "created_at": rfc3339(Some(row.created_at)),
        "started_at": rfc3339(row.started_at),
        "finished_at": rfc3339(row.finished_at),
        "last_epoch": row.last_epoch,
    });
    let obj = v.as_object_mut().expect("an object");
    if let Some(notice) = &row.notice {
        obj.insert("notice".into(), json!(notice));
    }
    match row.status {
        JobStatus::Queued => {
            let planned = plan.get(&row.id);
            obj.insert("queue_position".into(), json!(planned.and_then(|p| p.position)));
            obj.insert("estimated_start".into(), rfc3339(planned.and_then(|p| p.estimated_start)));
        }
        JobStatus::Running => {
            obj.insert("device".into(), json!(row.device));
            obj.insert("progress".into(), progress_json(row).unwrap_or(Value::Null));
        }
        JobStatus::Failed => {
            obj.insert("error".into(), json!(row.error));
        }
        _ => {}
    }
    // N.B.: a finished job still says where it trained.
    if row.status.is_finished() && row.device.is_some() {
        obj.insert("device".into(), json!(row.device));
    }
    v
}

/// A running job's place inside its current epoch, as its worker last said on the
/// heartbeat; `None` before the first report of the epoch under way.
pub(crate) fn progress_json(row: &JobRow) -> Option<Value> {
    let p = row.progress.as_ref()?;
    if row.status != JobStatus::Running || i64::from(p.epoch) <= row.epochs_done {
        return None;
    }
    Some(json!({
        "epoch": p.epoch,
        "batches_done": p.batches_done,
        "batches_total": p.batches_total,
        "fraction": p.batches_done as f64 / p.batches_total.max(1) as f64,
        "samples_per_second": (p.samples_per_second * 10.0).round() / 10.0,
        "epoch_eta": rfc3339(Some(p.epoch_eta_ms)),
        "eta": rfc3339(Some(p.job_eta_ms)),
        "updated_at": rfc3339(Some(p.at_ms)),
    }))
}

/// An `owner` that no user name can be (a control character, say).
fn bad_owner(code: &'static str, name: &str) -> ApiError {
    ApiError::bad_request(
        code,
        "owner",
        format!("owner must be a user name (1 to 64 characters of a-z, 0-9, '.', '_' and '-'); got {name:?}"),
    )
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job with id {id}"))
}

/// Job ids are UUIDs; anything else cannot name a job.
fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id).map(|u| u.to_string()).map_err(|_| not_found(id))
}

/// The job, if this user may see it; another user's job is as absent as a missing one.
pub async fn load(state: &AppState, user: &CurrentUser, id: &str) -> Result<JobRow, ApiError> {
    let id = parse_id(id)?;
    queue::get_job(&state.pool, &id).await?.filter(|r| user.may_see(r.owner_id)).ok_or_else(|| not_found(&id))
}

/// The job as shown, with its queue position when queued.
async fn show(state: &AppState, row: &JobRow) -> Result<Value, ApiError> {
    if row.status == JobStatus::StoppedEarly {
        // Why its search's rule stopped it, as the sweep says it.
        let mut v = job_json(row, &HashMap::new());
        if let (Some(d), Some(obj)) = (queue::search::stop_decision(&state.pool, &row.id).await?, v.as_object_mut()) {
            obj.insert("stopped_because".into(), Value::String(d.reason));
        }
        return Ok(v);
    }
    if row.status != JobStatus::Queued {
        return Ok(job_json(row, &HashMap::new()));
    }
    let problems = queue::problems::list_problems(&state.pool).await?;
    Ok(with_waiting(job_json(row, &plan(state).await?), row, &problems))
}

/// What a queued job waits on while the box cannot train it now: the box's own problems,
/// and its dataset's (another dataset's do not hold it).
fn waiting_for(row: &JobRow, problems: &[queue::problems::Problem]) -> Option<String> {
    let dataset = row.spec.as_ref().map_or(crate::dataset::DEFAULT.name, |s| s.dataset.as_str());
    let why: Vec<&str> =
        problems.iter().filter(|p| p.dataset().is_none_or(|d| d == dataset)).map(|p| p.message.as_str()).collect();
    (!why.is_empty()).then(|| why.join("; "))
}

/// A queued job's JSON with `waiting_for` while the box, or its dataset, has a problem; no
/// start can be estimated until it is fixed (N.B.: the plan would say "now": a worker is free).
fn with_waiting(mut v: Value, row: &JobRow, problems: &[queue::problems::Problem]) -> Value {
    if let (JobStatus::Queued, Some(why)) = (row.status, waiting_for(row, problems)) {
        let obj = v.as_object_mut().expect("an object");
        obj.insert("waiting_for".into(), json!(why));
        obj.insert("estimated_start".into(), Value::Null);
    }
    v
}

/// The `Idempotency-Key` header, if given: 1 to 200 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k.to_string())),
        _ => Err(ApiError::bad_request(
            "bad_idempotency_key",
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
        )),
    }
}

/// What an Idempotency-Key's retry must match: the parsed body, its keys in any order.
pub fn request_hash(body: &Value) -> String {
    hex::encode(Sha256::digest(super::json::canonical(body).as_bytes()))
}

/// What `{}` would queue, and how long this box would take over it (from the epochs of
/// jobs like it that ran here).
async fn empty_body_message(state: &AppState) -> Result<String, ApiError> {
    let spec = Spec::parse_with_seed(&json!({}), || 0).map_err(|e| ApiError::Invalid(e.0))?;
    let (model, batch) = (spec.model.as_str().to_string(), i64::from(spec.batch_size));
    let cost = match history(state).await?.get(&(model.clone(), batch)) {
        Some(s) => format!("about {} on this box", crate::plot::duration(s * f64::from(spec.epochs))),
        None => "no estimate yet: no such job has run on this box".into(),
    };
    Ok(format!(
        "the body is empty; send a JSON object. `-d '{{}}'` queues the tutorial's defaults: {model} at batch size          {batch} for {} epochs on all {} training images ({cost}); name epochs and train_limit for a shorter run",
        spec.epochs,
        crate::plot::thousands(spec.train_limit.map_or(spec.data().train_images, u64::from) as i64),
    ))
}

pub async fn create_job(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(JsonBody(body)) => body,
        Err(ApiError::BadRequest { code: super::json::EMPTY_BODY, field, .. }) => {
            return Err(ApiError::BadRequest {
                code: super::json::EMPTY_BODY,
                message: empty_body_message(&state).await?,
                field,
            })
        }
        Err(e) => return Err(e),
    };
    let key = idempotency_key(&headers)?;
    let store = super::datasets::refresh(&state).await;
    let spec = Spec::parse(&body).map_err(|e| ApiError::Invalid(e.0))?;
    let limits = &state.limits;
    let mut over = limits.check(&spec);
    over.extend(super::datasets::unavailable(&state, store, &[spec.data()]).await?);
    if !over.is_empty() {
        return Err(ApiError::Invalid(over));
    }
    let spec_json = spec.to_json().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let hash = request_hash(&body);
    let parameters = crate::network::parameter_count(&spec);
    let group_key = spec.group_key();
    let created = queue::create_job(
        &state.pool,
        NewJob {
            id: &id,
            owner_id: user.0.id,
            name: spec.name.as_deref(),
            spec: &spec_json,
            parameters,
            epochs_total: spec.epochs.into(),
            group_key: &group_key,
            idempotency_key: key.as_deref(),
            request_hash: &hash,
            now: queue::now_ms(),
        },
        limits.max_queued,
    )
    .await?;
    let (status, row) = match created {
        Created::New(row) => {
            state.hub.queued(&id);
            (StatusCode::CREATED, row)
        }
        Created::Existing(row) => (StatusCode::OK, row),
        Created::KeyConflict => return Err(ApiError::key_reused("job")),
        Created::OverLimit(OverLimit { queued }) => {
            return Err(ApiError::TooMany {
                message: format!(
                    "you have {queued} queued jobs; the limit is {} per user (TRAINYARD_MAX_QUEUED_PER_USER): wait for some to start, or cancel some",
                    limits.max_queued
                ),
                retry_after: None,
            })
        }
    };
    let location = format!("/jobs/{}", row.id);
    let shown = show(&state, &row).await?;
    Ok((status, [(header::LOCATION, location)], Json(shown)).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    /// Admins: one user's jobs only.
    owner: Option<String>,
}

/// Whose rows a list shows: admins everyone's (or one user's, with `?owner=`); everybody
/// else their own (`what` names the rows in the refusal).
pub(super) async fn owner_filter(
    state: &AppState,
    user: &CurrentUser,
    owner: Option<&str>,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    if let Some(name) = owner.filter(|n| !queue::users::valid_name(n)) {
        return Err(bad_owner("bad_query", name));
    }
    Ok(match owner {
        None if user.0.reads_everyone() => None,
        None => Some(user.0.id),
        Some(name) if name == user.0.name => Some(user.0.id),
        Some(_) if !user.0.reads_everyone() => {
            return Err(ApiError::Forbidden(format!("only instructors and admins can list another user's {what}")));
        }
        Some(name) => Some(
            queue::users::user_by_name(&state.pool, name)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no user named {name:?}")))?
                .id,
        ),
    })
}

pub async fn list_jobs(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match &q.status {
        None => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            ApiError::bad_request(
                "bad_query",
                "status",
                format!("status must be one of {}, got {s:?}", JobStatus::names()),
            )
        })?),
    };
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
    let owner = owner_filter(&state, &user, q.owner.as_deref(), "jobs").await?;
    let rows = queue::list_jobs(&state.pool, owner, status, limit, before).await?;
    let next = if rows.len() as i64 == limit { rows.last().map(|r| r.seq.to_string()) } else { None };
    let queued = rows.iter().any(|r| r.status == JobStatus::Queued);
    let plan = if queued { plan(&state).await? } else { HashMap::new() };
    let problems = if queued { queue::problems::list_problems(&state.pool).await? } else { Vec::new() };
    let jobs: Vec<Value> = rows.iter().map(|r| with_waiting(job_json(r, &plan), r, &problems)).collect();
    Ok(Json(json!({"jobs": jobs, "next_cursor": next})))
}

pub async fn get_job(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = load(&state, &user, &id).await?;
    Ok(Json(show(&state, &row).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    /// Whole, but `5.0` counts as 5, as JSON Schema has it.
    priority: f64,
}

/// Admins set a job's priority: higher goes first, whoever owns it.
pub async fn update_job(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let row = load(&state, &user, &id).await?;
    if !user.0.is_admin() {
        return Err(ApiError::Forbidden("only admins can change a job's priority".into()));
    }
    let patch: JobPatch = serde_json::from_value(body).map_err(|e| ApiError::BadRequest {
        code: "bad_body",
        message: format!("expected {{\"priority\": <integer>}}: {e}"),
        field: Some("priority".into()),
    })?;
    if patch.priority.fract() != 0.0 || !(-1000.0..=1000.0).contains(&patch.priority) {
        return Err(ApiError::bad_request(
            "bad_body",
            "priority",
            format!("priority must be a whole number from -1000 to 1000, got {}", patch.priority),
        ));
    }
    if row.status.is_finished() {
        return Err(ApiError::Conflict(format!(
            "job {} has already finished ({}); only a queued or running job's priority can change",
            row.id, row.status
        )));
    }
    queue::set_priority(&state.pool, &row.id, patch.priority as i64).await?;
    let row = load(&state, &user, &row.id).await?;
    Ok(Json(show(&state, &row).await?))
}

/// The whole queue, as any user may see it: no specs, no metrics, and ids only of one's own.
pub async fn get_queue(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let entries = queue::queue_entries(&state.pool).await?;
    let plan = plan_for(&state, &entries).await?;
    let now = queue::now_ms();
    let mut rows: Vec<(Option<usize>, Value)> = entries
        .iter()
        .map(|e| {
            let p = plan.get(&e.id);
            let model = e.spec.0.as_ref().map(|s| s.model);
            let dataset = e.spec.0.as_ref().map(|s| s.dataset.clone());
            let mine = e.owner_id == user.0.id;
            let waited = (e.started_at.unwrap_or(now) - e.created_at).max(0) as f64 / 1000.0;
            let pos = p.and_then(|p| p.position);
            let mut v = json!({
                "position": pos,
                "owner": e.owner,
                "model": model,
                "dataset": dataset,
                "status": e.status,
                "priority": e.priority,
                "waited_seconds": waited.round(),
                "estimated_start": rfc3339(p.and_then(|p| p.estimated_start)),
                "epochs_done": e.epochs_done,
                "epochs_total": e.epochs_total,
                "group": e.group_id.as_ref().filter(|_| e.status == JobStatus::Running),
                "mine": mine,
            });
            if mine || user.0.reads_everyone() {
                v.as_object_mut().expect("object").insert("id".into(), json!(e.id));
            }
            (pos, v)
        })
        .collect();
    // Running jobs first, then the queue in the order workers will take it.
    rows.sort_by_key(|(pos, _)| pos.unwrap_or(0));
    let workers = live_workers(&state).await?;
    let problems = queue::problems::list_problems(&state.pool).await?;
    Ok(Json(json!({
        "workers": workers,
        "problems": problems
            .iter()
            .map(|p| json!({"message": p.message, "dataset": p.dataset(), "since": rfc3339(Some(p.since))}))
            .collect::<Vec<_>>(),
        "jobs": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })))
}

pub async fn cancel_job(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = load(&state, &user, &id).await?;
    user.manage(row.owner_id, "cancel this job")?;
    let id = row.id;
    match queue::cancel_job(&state.pool, &id, queue::now_ms()).await? {
        CancelOutcome::NotFound => Err(not_found(&id)),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::Conflict(format!(
            "job {id} has already finished ({status}); only queued or running jobs can be cancelled"
        ))),
        CancelOutcome::Cancelled { was_running } => {
            if was_running {
                // Here it stops at once; a worker in another process notices at its next heartbeat.
                state.hub.stop(&id);
            }
            state.hub.publish(&id);
            state.hub.telemetry.job_finished(JobStatus::Cancelled);
            let row = load(&state, &user, &id).await?;
            Ok(Json(show(&state, &row).await?))
        }
    }
}

/// `POST /jobs/{id}/resume`: a trial its search stopped early goes back to the queue and
/// trains on from its checkpoint, to `epochs` (its own by default); its search's rule judges
/// it no more. Its owner's (or an admin's) call: the student who disagrees with the rule.
pub async fn resume_job(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let row = load(&state, &user, &id).await?;
    user.manage(row.owner_id, "resume this job")?;
    if row.status != JobStatus::StoppedEarly {
        return Err(ApiError::Conflict(format!(
            "job {} is {}; only a job that stopped early (status stopped_early) can be resumed",
            row.id, row.status
        )));
    }
    let Some(spec) = row.spec.clone() else {
        return Err(ApiError::Conflict(format!("job {}'s stored spec no longer parses; it cannot be resumed", row.id)));
    };
    let body = body.map_or(Value::Null, |JsonBody(b)| b);
    let allowed = "expected {} or {\"epochs\": N}, N more than the epochs it has done";
    let epochs = match &body {
        Value::Null => Value::from(spec.epochs),
        Value::Object(o) if o.keys().all(|k| k == "epochs") => match o.get("epochs") {
            None | Some(Value::Null) => Value::from(spec.epochs),
            Some(v) => v.clone(),
        },
        _ => return Err(ApiError::bad_request("bad_body", "epochs", format!("{allowed}, got {body}"))),
    };
    // N.B.: a trial stopped because its loss was not finite has no weights worth training on.
    if let Some(d) = queue::search::stop_decision(&state.pool, &row.id).await?.filter(|d| d.rule == "diverged") {
        return Err(ApiError::Conflict(format!(
            "job {} stopped because its loss was not finite at epoch {}: its weights are not numbers, so it cannot train on; queue a new job with a smaller lr",
            row.id, d.epoch
        )));
    }
    if queue::checkpoints::get_checkpoint(&state.pool, &row.id).await?.is_none() {
        return Err(ApiError::Conflict(format!(
            "job {} has no checkpoint any more (finished jobs' checkpoints are dropped after the server's --keep-checkpoints-days); queue it again as a new job",
            row.id
        )));
    }
    let mut json = spec.to_json();
    json["epochs"] = epochs.clone();
    let spec = match crate::spec::Spec::parse(&json) {
        Ok(s) => s,
        Err(e) => return Err(ApiError::Invalid(e.0)),
    };
    if i64::from(spec.epochs) <= row.epochs_done {
        return Err(ApiError::bad_request(
            "bad_body",
            "epochs",
            format!("{allowed}: it has done {} epochs, got {epochs}", row.epochs_done),
        ));
    }
    let over = state.limits.check(&spec);
    if !over.is_empty() {
        return Err(ApiError::Invalid(over));
    }
    let text = spec.to_json().to_string();
    let now = queue::now_ms();
    match queue::search::resume_stopped(
        &state.pool,
        &row.id,
        row.owner_id,
        &text,
        spec.epochs.into(),
        state.limits.max_queued,
        now,
    )
    .await?
    {
        queue::search::Resumed::Queued => {}
        queue::search::Resumed::NotStopped => {
            return Err(ApiError::Conflict(format!("job {} is no longer stopped_early", row.id)))
        }
        queue::search::Resumed::OverLimit(queued) => {
            return Err(ApiError::TooMany {
                message: format!(
                    "you have {queued} jobs queued; the limit is {} per user (TRAINYARD_MAX_QUEUED_PER_USER)",
                    state.limits.max_queued
                ),
                retry_after: None,
            })
        }
    }
    state.hub.publish(&row.id);
    state.hub.queued_many();
    let row = load(&state, &user, &row.id).await?;
    Ok((StatusCode::OK, Json(show(&state, &row).await?)))
}

/// `POST /jobs/cancel`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCancel {
    /// Only "queued": a running job is cancelled one by one, knowingly.
    status: String,
    /// Whose jobs (admins only); the caller's own when absent.
    owner: Option<String>,
}

/// Cancels all of a user's queued jobs in one request: a student's own, or (admins) anyone's.
pub async fn cancel_jobs(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let bulk: BulkCancel = serde_json::from_value(body).map_err(|e| ApiError::BadRequest {
        code: "bad_body",
        message: format!("expected {{\"status\": \"queued\"}} and, for admins, \"owner\": \"NAME\": {e}"),
        field: None,
    })?;
    if bulk.status != "queued" {
        return Err(ApiError::bad_request(
            "bad_body",
            "status",
            format!(
                "only \"queued\" jobs are cancelled in bulk (got {:?}); cancel a running job by its id",
                bulk.status
            ),
        ));
    }
    if let Some(name) = bulk.owner.as_deref().filter(|n| !queue::users::valid_name(n)) {
        return Err(bad_owner("bad_body", name));
    }
    let owner = match bulk.owner {
        None => user.0.clone(),
        Some(name) if name == user.0.name => user.0.clone(),
        Some(_) if !user.0.is_admin() => {
            return Err(ApiError::Forbidden("only admins can cancel another user's jobs".into()));
        }
        Some(name) => queue::users::user_by_name(&state.pool, &name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no user named {name:?}")))?,
    };
    let ids = queue::cancel_queued(&state.pool, owner.id, queue::now_ms()).await?;
    for id in &ids {
        state.hub.publish(id);
        state.hub.telemetry.job_finished(JobStatus::Cancelled);
    }
    Ok(Json(json!({"owner": owner.name, "cancelled": ids.len(), "ids": ids})))
}

#[derive(Deserialize)]
pub struct MetricsQuery {
    since: Option<String>,
    format: Option<String>,
}

/// A download's file name stem: the job's name (or id) with anything but letters, digits,
/// '-' and '_' made '_'.
fn file_stem(row: &JobRow) -> String {
    let name = row.name.as_deref().unwrap_or(&row.id);
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The epochs as CSV, one row each, the columns of an epoch's JSON row; empty cells for
/// losses that were not finite (and for the rate of rows recorded before rates were).
fn metrics_csv(epochs: &[crate::job::EpochMetrics]) -> String {
    let mut out = String::from(
        "epoch,train_loss,train_acc,test_loss,test_acc,seconds,train_seconds,samples_per_second,diverged,lr\n",
    );
    let loss = |l: Option<f64>| l.map_or(String::new(), |v| v.to_string());
    for e in epochs {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            e.epoch,
            loss(e.train_loss),
            e.train_acc,
            loss(e.test_loss),
            e.test_acc,
            e.seconds,
            e.train_seconds,
            e.samples_per_second,
            e.diverged,
            loss(e.lr)
        ));
    }
    out
}

/// `format=json` (the default) or `format=csv`: whether CSV is asked.
pub(super) fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request("bad_query", "format", format!("format must be json or csv, got {other:?}")))
        }
    }
}

pub async fn get_metrics(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(q.format.as_deref())?;
    let since = match &q.since {
        None => 0,
        // N.B.: any whole number is an epoch number; one past i64 is after every epoch.
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<i64>().unwrap_or(i64::MAX),
        Some(s) => s.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
            ApiError::bad_request("bad_query", "since", format!("since must be an epoch number >= 0, got {s:?}"))
        })?,
    };
    let row = load(&state, &user, &id).await?;
    let stored = queue::get_metrics(&state.pool, &row.id, since).await?;
    if csv {
        let epochs = stored;
        let stem = file_stem(&row);
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{stem}-metrics.csv\"")),
            ],
            metrics_csv(&epochs),
        )
            .into_response());
    }
    let epochs = stored;
    Ok(Json(json!({
        "job_id": row.id,
        "status": row.status,
        "epochs_total": row.epochs_total,
        "epochs": epochs,
        "progress": progress_json(&row),
    }))
    .into_response())
}

/// The trained weights (safetensors), for the job's owner and admins.
pub async fn get_model(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = load(&state, &user, &id).await?;
    let Some((_, checkpoint)) = queue::checkpoints::get_checkpoint(&state.pool, &row.id).await? else {
        return Err(ApiError::Conflict(if row.epochs_done > 0 && row.finished_at.is_some() {
            format!(
                "job {}'s trained weights were removed by the box's retention (--keep-checkpoints-days, \
                 or `trainyard gc`); its metrics and plots remain",
                row.id
            )
        } else {
            format!("job {} has no trained weights yet: no epoch has finished ({})", row.id, row.status)
        }));
    };
    let place = format!("the checkpoint of job {}", row.id);
    let exported = tokio::task::spawn_blocking(move || crate::train::checkpoint::export_weights(place, checkpoint))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let (bytes, epoch) = exported.map_err(|e| {
        use crate::train::CheckpointError;
        match e {
            // N.B.: bad bytes on the box are not a bug to log with a backtrace: one line,
            // and an answer that says what is wrong.
            CheckpointError::Damaged { .. } | CheckpointError::Corrupt { .. } => {
                tracing::warn!(job.id = %row.id, error = %e, "a checkpoint cannot be read");
                ApiError::Conflict(format!(
                    "{e}; its weights cannot be downloaded (a job that runs again trains from epoch 1)"
                ))
            }
            other => ApiError::Internal(other.into()),
        }
    })?;
    let stem = file_stem(&row);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{stem}-epoch{epoch}.safetensors\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Every worker seen in the last day (admins): its device, last heartbeat and current job.
pub async fn list_workers(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    if !user.0.reads_everyone() {
        return Err(ApiError::Forbidden("only instructors and admins can list the workers".into()));
    }
    let now = queue::now_ms();
    let rows = queue::workers::list_workers(&state.pool, now - state.forget_workers.as_millis() as i64).await?;
    let live_since = now - state.live_window.as_millis() as i64;
    let mut running: HashMap<String, Vec<String>> = HashMap::new();
    for (worker, id) in queue::workers::running_jobs(&state.pool).await? {
        running.entry(worker).or_default().push(id);
    }
    let workers: Vec<Value> = rows
        .iter()
        .map(|w| {
            // N.B.: a worker killed with -9 never says it stopped; its silence says it.
            let status = w.state(live_since);
            json!({
                "name": w.name,
                "host": w.host,
                "device": w.device,
                "state": status,
                "started_at": rfc3339(Some(w.started_at)),
                "last_heartbeat": rfc3339(Some(w.last_seen_at)),
                "seconds_since_heartbeat": ((now - w.last_seen_at).max(0) as f64 / 1000.0).round(),
                "job_id": w.job_id.as_ref().filter(|_| status == "busy"),
                // N.B.: a fused group's members all run on its one worker.
                "jobs": running.get(&w.name).filter(|_| status == "busy").cloned().unwrap_or_default(),
                "stopped": w.stopped_at.is_some(),
            })
        })
        .collect();
    Ok(Json(json!({"workers": workers})))
}

/// The job routes: submit, list, show, change, cancel; metrics, weights; the queue and its workers.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::post("/jobs", create_job),
        Route::get("/jobs", &["status", "limit", "cursor", "owner"], list_jobs),
        Route::get("/jobs/{id}", &[], get_job),
        Route::patch("/jobs/{id}", update_job),
        Route::post("/jobs/{id}/cancel", cancel_job),
        Route::post("/jobs/{id}/resume", resume_job),
        Route::post("/jobs/cancel", cancel_jobs),
        Route::get("/jobs/{id}/metrics", &["since", "format"], get_metrics),
        Route::get("/jobs/{id}/model", &[], get_model),
        Route::get("/queue", &[], get_queue),
        Route::get("/workers", &[], list_workers),
    ]
}
