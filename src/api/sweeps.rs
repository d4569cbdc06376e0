//! /sweeps: one request runs a whole study — a grid, or the assignment preset — and returns
//! its figures and report.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::json::JsonBody;
use super::plots::{options, respond, Loaded, PlotQuery};
use super::AppState;
use super::Route;
use crate::job::EpochMetrics;
use crate::queue::search::Decision;
use crate::queue::sweeps::{self, NewSweepJob, SweepCreated, SweepJob, SweepRow};
use crate::queue::{self, CancelOutcome, NewJob, Pool};
use crate::report::{self, JobView, Report, RungEntry, RungView, SearchView, SectionView, TrialView};
use crate::spec::Spec;
use crate::sweep::{self, Section};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub(super) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or(String::new(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no sweep with id {id}"))
}

async fn load_sweep(state: &AppState, user: &CurrentUser, id: &str) -> Result<SweepRow, ApiError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found(id))?.to_string();
    sweeps::get_sweep(&state.pool, &id).await?.filter(|s| user.may_see(s.owner_id)).ok_or_else(|| not_found(&id))
}

/// Every preset's sections, with their jobs' labels in order.
pub(super) fn preset_sections() -> impl Iterator<Item = (Section, Vec<(&'static str, serde_json::Value)>)> {
    sweep::PRESETS.iter().filter_map(|p| sweep::sections_of(p)).flatten()
}

/// A section some sweep has (a preset's, a grid's or a search's one).
fn known_section(key: &str) -> bool {
    key == sweep::grid_section().key
        || key == sweep::search_section().key
        || preset_sections().any(|(s, _)| s.key == key)
}

/// The sections of a sweep's report, in order.
fn sections_for(sweep: &SweepRow) -> Vec<Section> {
    sweep::sections_for_definition(&sweep.definition)
}

/// The sweep's search, if it samples trials or stops them early: its rungs, best trial and
/// the epochs saved, from its jobs, their epochs and the decisions made about them.
fn search_view(
    sweep: &SweepRow,
    jobs: &[SweepJob],
    decisions: &[Decision],
    epochs: &HashMap<String, Vec<EpochMetrics>>,
) -> Option<SearchView> {
    let def = &sweep.definition;
    let early_stop = sweep::early_stop_of(def);
    let section = if sweep::searches_lr(def) && def.get("preset").is_some() {
        "lr"
    } else if def.get("search").is_some() {
        "search"
    } else if early_stop.is_some() {
        "all"
    } else {
        return None;
    };
    let metric = early_stop.map_or(crate::search::Metric::TestAcc, |r| r.metric());
    let space: Vec<(String, Value)> = match def.get("search").and_then(Value::as_object) {
        Some(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None if section == "lr" => {
            let (lo, hi) = sweep::LR_SEARCH_RANGE;
            vec![("lr".into(), json!({"log_uniform": [lo, hi]}))]
        }
        None => Vec::new(),
    };
    let label_of = |j: &SweepJob| j.sections.iter().find(|(k, _)| k == section).map(|(_, l)| l.clone());
    let trials: Vec<TrialView> = jobs
        .iter()
        .filter(|j| j.trial)
        .map(|j| {
            let rows = epochs.get(&j.job.id).map_or(&[][..], Vec::as_slice);
            let best = metric.best_by(rows.iter().filter_map(|e| metric.of(e).map(|v| (v, e.epoch))));
            let mine = decisions.iter().filter(|d| d.job_id == j.job.id);
            TrialView {
                id: j.job.id.clone(),
                label: label_of(j).unwrap_or_else(|| j.job.id[..8].to_string()),
                status: j.job.status,
                point: j.point.clone(),
                epochs_done: j.job.epochs_done,
                epochs_total: j.job.epochs_total,
                best: best.map(|b| b.0),
                best_epoch: best.map(|b| b.1),
                rung: mine.clone().filter_map(|d| d.rung).max(),
                stopped_because: mine.filter(|d| !d.promoted).map(|d| d.reason.clone()).next(),
                resumed: j.resumed,
            }
        })
        .collect();
    let mut rungs: Vec<RungView> = Vec::new();
    for d in decisions.iter().filter(|d| d.rule == "asha") {
        let Some(rung) = d.rung else { continue };
        let label =
            trials.iter().find(|t| t.id == d.job_id).map_or_else(|| d.job_id[..8].to_string(), |t| t.label.clone());
        let entry = RungEntry { id: d.job_id.clone(), label, value: d.value, promoted: d.promoted };
        match rungs.iter_mut().find(|r| r.rung == rung) {
            Some(r) => r.trials.push(entry),
            None => rungs.push(RungView { rung, epoch: d.epoch, trials: vec![entry] }),
        }
    }
    rungs.sort_by_key(|r| r.rung);
    let best = metric.best_by(trials.iter().filter_map(|t| t.best.map(|v| (v, t)))).map(|(_, t)| t.clone());
    let count = |f: fn(&TrialView) -> i64| trials.iter().map(|t| f(t).max(0) as u64).sum::<u64>();
    let epochs_saved = trials
        .iter()
        .filter(|t| t.status == crate::job::JobStatus::StoppedEarly)
        .map(|t| (t.epochs_total - t.epochs_done).max(0) as u64)
        .sum();
    Some(SearchView {
        section: section.into(),
        early_stop,
        metric,
        sampling_seed: def.get("seed").and_then(Value::as_u64),
        space,
        epochs_run: count(|t| t.epochs_done),
        epochs_full: count(|t| t.epochs_total),
        epochs_saved,
        trials,
        rungs,
        best,
    })
}

/// The jobs a section shows, with their labels there; a preset section lists them in the
/// order the assignment names them.
fn members_of<'a>(jobs: &'a [SweepJob], key: &str) -> Vec<(&'a SweepJob, String)> {
    let mut members: Vec<(&SweepJob, String)> = jobs
        .iter()
        .filter_map(|j| j.sections.iter().find(|(k, _)| k == key).map(|(_, label)| (j, label.clone())))
        .collect();
    if let Some((_, order)) = preset_sections().find(|(s, _)| s.key == key) {
        members.sort_by_key(|(_, label)| order.iter().position(|(l, _)| l == label).unwrap_or(usize::MAX));
    }
    members
}

/// A sweep's jobs with each one's epochs, and its search as the decisions made so far show
/// it: what both its JSON and its report are made of.
async fn load_jobs(
    pool: &Pool,
    sweep: &SweepRow,
) -> Result<(Vec<SweepJob>, HashMap<String, Vec<EpochMetrics>>, Option<SearchView>), ApiError> {
    let jobs = sweeps::sweep_jobs(pool, &sweep.id).await?;
    let epochs = sweeps::sweep_metrics(pool, &sweep.id).await?;
    let decisions = queue::search::sweep_decisions(pool, &sweep.id).await?;
    let search = search_view(sweep, &jobs, &decisions, &epochs);
    Ok((jobs, epochs, search))
}

/// Everything the report shows, read from the database (also used by `trainyard report`).
pub async fn build_report(pool: &Pool, sweep: &SweepRow) -> Result<Report, ApiError> {
    let (jobs, epochs, mut search) = load_jobs(pool, sweep).await?;
    let mut sections = Vec::new();
    for section in sections_for(sweep) {
        let members = members_of(&jobs, section.key);
        if members.is_empty() {
            continue;
        }
        let specs: Vec<(Option<String>, Value)> =
            members.iter().map(|(j, _)| (None, j.job.spec.as_ref().map_or(Value::Null, Spec::to_json))).collect();
        let shared = crate::plot::compare(&specs).shared;
        let views = members
            .iter()
            .map(|(j, label)| JobView {
                label: label.clone(),
                id: j.job.id.clone(),
                status: j.job.status,
                parameters: j.job.parameters,
                epochs_total: j.job.epochs_total,
                epochs: epochs.get(&j.job.id).cloned().unwrap_or_default(),
                spec: j.job.spec.as_ref().map_or(Value::Null, Spec::to_json),
            })
            .collect();
        let search = search.take_if(|s| s.section == section.key);
        sections.push(SectionView { section, shared, jobs: views, search });
    }
    Ok(Report {
        sweep_id: sweep.id.clone(),
        title: sweep.name.clone().unwrap_or_else(|| format!("Sweep {}", &sweep.id[..8])),
        created_at: rfc3339(sweep.created_at),
        sections,
    })
}

fn job_summary(j: &SweepJob, epochs: &[EpochMetrics], search: Option<&SearchView>) -> Value {
    let trial = search.and_then(|s| s.trials.iter().find(|t| t.id == j.job.id));
    let last = epochs.last();
    let best = epochs.iter().max_by(|a, b| a.test_acc.total_cmp(&b.test_acc));
    json!({
        "id": j.job.id,
        "name": j.job.name,
        "status": j.job.status,
        "diverged": j.job.diverged_at.is_some(),
        "diverged_at": j.job.diverged_at,
        "point": j.point,
        "sections": j.sections.iter().map(|(k, l)| json!({"section": k, "label": l})).collect::<Vec<_>>(),
        "parameters": j.job.parameters,
        "epochs_done": j.job.epochs_done,
        "epochs_total": j.job.epochs_total,
        "final": last,
        "best_test_acc": best.map(|b| b.test_acc),
        "best_epoch": best.map(|b| b.epoch),
        "trial": j.trial,
        "resumed": j.resumed,
        "rung": trial.and_then(|t| t.rung),
        "stopped_because": trial.and_then(|t| t.stopped_because.clone()),
    })
}

async fn sweep_json(pool: &Pool, sweep: &SweepRow) -> Result<Value, ApiError> {
    let (jobs, epochs, search) = load_jobs(pool, sweep).await?;
    let out: Vec<Value> = jobs
        .iter()
        .map(|j| job_summary(j, epochs.get(&j.job.id).map_or(&[], Vec::as_slice), search.as_ref()))
        .collect();
    let mut counts = serde_json::Map::new();
    for j in &jobs {
        let n = counts.get(j.job.status.as_str()).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(j.job.status.to_string(), json!(n + 1));
    }
    Ok(json!({
        "id": sweep.id,
        "name": sweep.name,
        "owner": sweep.owner,
        "created_at": rfc3339(sweep.created_at),
        "definition": sweep.definition,
        "status_counts": counts,
        "jobs": out,
        "search": search,
        "report": format!("/sweeps/{}/report", sweep.id),
    }))
}

pub async fn create_sweep(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = super::jobs::idempotency_key(&headers)?;
    let seed = crate::spec::draw_seed();
    let store = super::datasets::refresh(&state).await;
    let plan = sweep::plan(&body, seed).map_err(ApiError::Invalid)?;
    let limits = &state.limits;
    // The first job that does not fit names the problem (a grid's jobs share their fields).
    if let Some(over) = plan.jobs.iter().map(|j| limits.check(&j.spec)).find(|e| !e.is_empty()) {
        return Err(ApiError::Invalid(over));
    }
    let datasets: Vec<_> = plan.jobs.iter().map(|j| j.spec.data()).collect();
    let unavailable = super::datasets::unavailable(&state, store, &datasets).await?;
    if !unavailable.is_empty() {
        return Err(ApiError::Invalid(unavailable));
    }
    let sweep_id = uuid::Uuid::new_v4().to_string();
    let now = queue::now_ms();
    let prepared: Vec<(String, String, String, String, String, String)> = plan
        .jobs
        .iter()
        .map(|j| {
            let spec = j.spec.to_json().to_string();
            let hash = hex::encode(Sha256::digest(spec.as_bytes()));
            (
                uuid::Uuid::new_v4().to_string(),
                spec,
                hash,
                Value::Object(j.point.clone()).to_string(),
                json!(j.sections).to_string(),
                j.spec.group_key(),
            )
        })
        .collect();
    let jobs: Vec<NewSweepJob> = plan
        .jobs
        .iter()
        .zip(&prepared)
        .map(|(j, (id, spec, hash, point, sections, group_key))| NewSweepJob {
            job: NewJob {
                id,
                owner_id: user.0.id,
                name: j.spec.name.as_deref(),
                spec,
                parameters: crate::network::parameter_count(&j.spec),
                epochs_total: j.spec.epochs.into(),
                group_key: group_key.as_str(),
                idempotency_key: None,
                request_hash: hash,
                now,
            },
            point: point.clone(),
            sections: sections.clone(),
            trial: j.trial,
        })
        .collect();
    let n = jobs.len();
    // N.B.: the definition records the seed the search sampled with, drawn or given, so the
    // same request with it samples the same trials.
    let mut definition = body.clone();
    if let (Some(seed), Some(obj)) = (plan.sampling_seed, definition.as_object_mut()) {
        obj.insert("seed".into(), json!(seed));
    }
    let definition = definition.to_string();
    let sweep = sweeps::NewSweep {
        id: &sweep_id,
        owner_id: user.0.id,
        name: plan.name.as_deref(),
        definition: &definition,
        preset: body.get("preset").and_then(Value::as_str),
        idempotency_key: key.as_deref(),
        request_hash: &super::jobs::request_hash(&body),
        now,
    };
    let (status, sweep_id) = match sweeps::create_sweep(&state.pool, &sweep, jobs, limits.max_queued).await? {
        SweepCreated::New => {
            state.hub.queued_many();
            (StatusCode::CREATED, sweep_id)
        }
        SweepCreated::Existing(id) => (StatusCode::OK, id),
        SweepCreated::KeyConflict => return Err(ApiError::key_reused("sweep")),
        SweepCreated::OverLimit(queue::OverLimit { queued }) => {
            return Err(ApiError::TooMany {
                message: format!(
                    "this sweep queues {n} jobs and you have {queued} queued; the limit is {} per user (TRAINYARD_MAX_QUEUED_PER_USER)",
                    limits.max_queued
                ),
                retry_after: None,
            });
        }
    };
    let sweep = sweeps::get_sweep(&state.pool, &sweep_id).await?.ok_or_else(|| not_found(&sweep_id))?;
    let body = sweep_json(&state.pool, &sweep).await?;
    Ok((status, [(header::LOCATION, format!("/sweeps/{sweep_id}"))], Json(body)).into_response())
}

/// `POST /sweeps/check`: what a sweep would queue and how long this box would take over it,
/// from the epochs of jobs like its jobs that ran here (the queue's own estimates); nothing
/// is queued. A request that does not plan is a 422, as `POST /sweeps` answers it.
pub async fn check_sweep(
    State(state): State<AppState>,
    _user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let store = super::datasets::refresh(&state).await;
    let plan = sweep::plan(&body, 0).map_err(ApiError::Invalid)?;
    let mut errors: Vec<crate::spec::FieldError> =
        plan.jobs.iter().map(|j| state.limits.check(&j.spec)).find(|e| !e.is_empty()).unwrap_or_default();
    let datasets: Vec<_> = plan.jobs.iter().map(|j| j.spec.data()).collect();
    errors.extend(super::datasets::unavailable(&state, store, &datasets).await?);
    let history = super::jobs::history(&state).await?;
    let workers = super::jobs::live_workers(&state).await?.max(1);
    let mut total = 0.0;
    let mut unknown = 0;
    let jobs: Vec<Value> = plan
        .jobs
        .iter()
        .map(|j| {
            let setup = (j.spec.model.as_str().to_string(), i64::from(j.spec.batch_size));
            let seconds = history.get(&setup).map(|s| s * f64::from(j.spec.epochs));
            match seconds {
                Some(s) => total += s,
                None => unknown += 1,
            }
            json!({"name": j.spec.name, "network": j.spec.network_name(), "epochs": j.spec.epochs,
                   "estimated_seconds": seconds})
        })
        .collect();
    // N.B.: the box's workers share the jobs; fused groups only make it sooner.
    let wall = (unknown == 0).then(|| total / workers as f64);
    Ok(Json(json!({
        "name": plan.name,
        "accepted": errors.is_empty(),
        "errors": errors,
        "jobs": jobs,
        "workers": workers,
        "estimated_seconds": wall,
        "without_estimate": unknown,
    })))
}

#[derive(Deserialize)]
pub struct SweepListQuery {
    /// Admins: one user's sweeps only.
    owner: Option<String>,
}

pub async fn list_sweeps(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<SweepListQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = super::jobs::owner_filter(&state, &user, q.owner.as_deref(), "sweeps").await?;
    let rows = sweeps::list_sweeps(&state.pool, owner).await?;
    let mut counts: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    for (sweep, status, n) in sweeps::sweep_status_counts(&state.pool, owner).await? {
        counts.entry(sweep).or_default().insert(status, json!(n));
    }
    let list: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "name": s.name, "owner": s.owner, "created_at": rfc3339(s.created_at), "url": format!("/sweeps/{}", s.id),
                "status_counts": counts.remove(&s.id).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({"sweeps": list})))
}

pub async fn get_sweep(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sweep = load_sweep(&state, &user, &id).await?;
    Ok(Json(sweep_json(&state.pool, &sweep).await?))
}

/// Cancels every job of the sweep that has not finished.
pub async fn cancel_sweep(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sweep = load_sweep(&state, &user, &id).await?;
    user.manage(sweep.owner_id, "cancel this sweep")?;
    let jobs = sweeps::sweep_jobs(&state.pool, &sweep.id).await?;
    if jobs.iter().all(|j| j.job.status.is_finished()) {
        return Err(ApiError::Conflict(format!(
            "sweep {} has already finished: none of its jobs is queued or running",
            sweep.id
        )));
    }
    for j in jobs {
        if let CancelOutcome::Cancelled { was_running } =
            queue::cancel_job(&state.pool, &j.job.id, queue::now_ms()).await?
        {
            if was_running {
                state.hub.stop(&j.job.id);
            }
            state.hub.publish(&j.job.id);
            state.hub.telemetry.job_finished(crate::job::JobStatus::Cancelled);
        }
    }
    Ok(Json(sweep_json(&state.pool, &sweep).await?))
}

/// The query of a route whose one parameter is `format` (a report's, the class's).
#[derive(Deserialize)]
pub struct FormatQuery {
    pub(super) format: Option<String>,
}

pub async fn get_report(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let sweep = load_sweep(&state, &user, &id).await?;
    let kind = ReportKind::parse(q.format.as_deref())?;
    let r = build_report(&state.pool, &sweep).await?;
    let file = format!("sweep-{}-report", &sweep.id[..8]);
    let slot = state.render_slot()?;
    let drawn = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        kind.render(&file, || Ok(report::html(&r)), || Ok(report::markdown(&r)), || report::bundle(&r))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    report_response(drawn?)
}

/// The forms a report is served in: `format=html` (the default), `md` or `zip`.
#[derive(Clone, Copy)]
pub(super) enum ReportKind {
    Html,
    Md,
    Zip,
}

/// A drawn report: its body, content type and Content-Disposition.
pub(super) type Drawn = (Vec<u8>, &'static str, String);

impl ReportKind {
    pub(super) fn parse(format: Option<&str>) -> Result<ReportKind, ApiError> {
        match format {
            None | Some("html") => Ok(ReportKind::Html),
            Some("md") => Ok(ReportKind::Md),
            Some("zip") => Ok(ReportKind::Zip),
            Some(other) => Err(ApiError::bad_request(
                "bad_query",
                "format",
                format!("format must be one of html, md, zip, got {other:?}"),
            )),
        }
    }

    /// Draws the report in this form, named `file` (no extension) for a download.
    pub(super) fn render(
        self,
        file: &str,
        html: impl FnOnce() -> anyhow::Result<String>,
        md: impl FnOnce() -> anyhow::Result<String>,
        zip: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Drawn> {
        Ok(match self {
            ReportKind::Html => {
                (html()?.into_bytes(), "text/html; charset=utf-8", format!("inline; filename=\"{file}.html\""))
            }
            ReportKind::Md => {
                (md()?.into_bytes(), "text/markdown; charset=utf-8", format!("inline; filename=\"{file}.md\""))
            }
            ReportKind::Zip => (zip()?, "application/zip", format!("attachment; filename=\"{file}.zip\"")),
        })
    }
}

/// A report as served, under the report's content policy.
pub(super) fn report_response((body, ctype, disposition): Drawn) -> Result<Response, ApiError> {
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            // N.B.: the report holds names students typed; it may style itself and draw its
            // inline SVG, nothing else: no script, no fetch, no framing.
            (header::CONTENT_SECURITY_POLICY, REPORT_CSP.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
        body,
    )
        .into_response())
}

/// The served report's content policy: its own inline style and SVG, nothing to run or fetch.
pub const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Deserialize)]
pub struct SweepPlotQuery {
    section: Option<String>,
    /// `true`: the class's band behind each run ("compare me with the class").
    class: Option<String>,
    #[serde(flatten)]
    plot: PlotQuery,
}

/// The sweep's jobs (or one section's) overlaid, named by what varies.
pub async fn plot_sweep(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<SweepPlotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let opts = options(&q.plot)?;
    let with_class = match q.class.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                "class",
                format!("class must be true or false, got {other:?}"),
            ))
        }
    };
    let sweep = load_sweep(&state, &user, &id).await?;
    let sections = sections_for(&sweep);
    let key = match &q.section {
        None => None,
        Some(k) if sections.iter().any(|s| s.key == k) => Some(k.clone()),
        Some(k) if known_section(k) => {
            let keys: Vec<&str> = sections.iter().map(|s| s.key).collect();
            return Err(ApiError::NotFound(format!(
                "this sweep has no section {k:?}; its sections: {}",
                keys.join(", ")
            )));
        }
        Some(k) => {
            let keys: Vec<&str> = sections.iter().map(|s| s.key).collect();
            return Err(ApiError::bad_request(
                "bad_query",
                "section",
                format!("section must be one of {}, got {k:?}", keys.join(", ")),
            ));
        }
    };
    let jobs = sweeps::sweep_jobs(&state.pool, &sweep.id).await?;
    let members: Vec<(&SweepJob, String)> = match &key {
        Some(k) => members_of(&jobs, k),
        None => jobs
            .iter()
            .map(|j| (j, j.sections.first().map(|(_, l)| l.clone()).unwrap_or_else(|| j.job.id[..8].to_string())))
            .collect(),
    };
    let class = match with_class {
        true => Some(super::class::class_of(&state, &user, &sweep).await?),
        false => None,
    };
    let mut loaded = Vec::new();
    let mut labels = Vec::new();
    let mut bands: HashMap<String, HashMap<String, Vec<crate::plot::class::BandPoint>>> = HashMap::new();
    for (j, label) in members {
        let epochs = queue::get_metrics(&state.pool, &j.job.id, 0).await?;
        let mut l = Loaded::new(j.job.clone(), epochs);
        if let Some((a, subs)) = &class {
            let section = key.clone().or_else(|| j.sections.first().map(|(k, _)| k.clone())).unwrap_or_default();
            let shown = j.sections.iter().find(|(k, _)| *k == section).map_or(label.as_str(), |(_, l)| l.as_str());
            let label = if j.trial { crate::class::BEST_TRIAL } else { shown };
            let of_section = bands.entry(section.clone()).or_insert_with(|| {
                let min = state.class.min_students;
                super::class::bands(subs, a, &sweep.owner, &section, crate::search::Metric::TestAcc, min)
            });
            l.band = of_section.get(label).cloned();
        }
        loaded.push(l);
        labels.push(label);
    }
    let title = match key.as_ref().and_then(|k| sections.iter().find(|s| s.key == k)) {
        Some(s) => s.title.to_string(),
        None => sweep.name.clone().unwrap_or_else(|| format!("Sweep {}", &sweep.id[..8])),
    };
    let specs: Vec<(Option<String>, Value)> = loaded.iter().map(|l| (None, l.spec.clone())).collect();
    let shared = if specs.is_empty() { String::new() } else { crate::plot::compare(&specs).shared };
    respond(&state, &headers, opts, loaded, labels, title, shared).await
}

/// The sweep routes: create, list, show, cancel, its figures and its report.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::post("/sweeps", create_sweep),
        Route::post("/sweeps/check", check_sweep),
        Route::get("/sweeps", &["owner"], list_sweeps),
        Route::get("/sweeps/{id}", &[], get_sweep),
        Route::post("/sweeps/{id}/cancel", cancel_sweep),
        Route::get("/sweeps/{id}/plot", &["section", "class", "metric", "format", "width", "height", "y"], plot_sweep),
        Route::get("/sweeps/{id}/report", &["format"], get_report),
    ]
}
