//! The class view of an assignment (a preset): `GET /class/{assignment}` as JSON or CSV,
//! its figures and its report. Instructors and admins see every student; a student sees
//! their own row, and the class only as anonymous quartiles drawn from enough others.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::sweeps::rfc3339;
use super::AppState;
use super::Route;
use crate::class::{
    self, curves_figure, metric_words, strip_figure, Assignment, ClassView, Quartiles, RunCell, RunData, Submission,
};
use crate::job::JobStatus;
use crate::plot::class::BandPoint;
use crate::plot::{self, Format};
use crate::queue;
use crate::queue::sweeps::{self, SweepRow};
use crate::search::Metric;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

/// The assignment named in the path, or a 404 that lists them.
fn assignment(name: &str) -> Result<Assignment, ApiError> {
    Assignment::of_preset(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no assignment named {name:?}; the assignments are the presets: {}",
            crate::sweep::PRESETS.join(", ")
        ))
    })
}

/// Every student's submissions of the assignment, as the class view reads them: each
/// student's newest sweep with its jobs and their epochs. Read once per change of the queue
/// (its last event and its sweeps), then shared: a class's page refreshing as jobs finish
/// does not read every student's epochs again for each viewer.
pub(super) async fn submissions(state: &AppState, a: &Assignment) -> Result<Arc<Vec<Submission>>, ApiError> {
    let version = (queue::events::last_seq(&state.pool).await?, sweeps::count_sweeps(&state.pool).await?);
    if let Some((v, subs)) = state.class_cache.lock().unwrap_or_else(PoisonError::into_inner).get(&a.key) {
        if *v == version {
            return Ok(subs.clone());
        }
    }
    let subs = Arc::new(read_submissions(state, a).await?);
    state.class_cache.lock().unwrap_or_else(PoisonError::into_inner).insert(a.key.clone(), (version, subs.clone()));
    Ok(subs)
}

async fn read_submissions(state: &AppState, a: &Assignment) -> Result<Vec<Submission>, ApiError> {
    let rows = sweeps::preset_sweeps(&state.pool, &a.key, None).await?;
    let mut by_owner: Vec<(i64, Vec<&SweepRow>)> = Vec::new();
    for r in &rows {
        match by_owner.iter_mut().find(|(o, _)| *o == r.owner_id) {
            Some((_, list)) => list.push(r),
            None => by_owner.push((r.owner_id, vec![r])),
        }
    }
    let mut out = Vec::with_capacity(by_owner.len());
    for (_, list) in by_owner {
        let newest = list[0];
        let jobs = sweeps::sweep_jobs(&state.pool, &newest.id).await?;
        let mut epochs = sweeps::sweep_metrics(&state.pool, &newest.id).await?;
        let runs = jobs
            .into_iter()
            .map(|j| RunData {
                epochs: epochs.remove(&j.job.id).unwrap_or_default(),
                chance: j.job.spec.as_ref().map(|s| s.data().chance()),
                job_id: j.job.id,
                sections: j.sections,
                status: j.job.status,
                epochs_done: j.job.epochs_done,
                epochs_total: j.job.epochs_total,
                diverged: j.job.diverged_at.is_some(),
                trial: j.trial,
            })
            .collect();
        out.push(Submission {
            student: newest.owner.clone(),
            sweep_id: newest.id.clone(),
            created_at: rfc3339(newest.created_at),
            earlier: list[1..].iter().map(|s| (s.id.clone(), rfc3339(s.created_at))).collect(),
            runs,
        });
    }
    Ok(out)
}

/// The class as this user may see it: everyone for an instructor or admin. A student gets
/// their own row, with flags said without the class's numbers (and a flag that judged them
/// against the class only when the band is on and at least `min_students` others were
/// judged with), and the class's quartiles of a run (the others', rounded to a point) only
/// when the band is on and at least `min_students` others finished it.
fn visible(state: &AppState, user: &CurrentUser, mut v: ClassView) -> ClassView {
    if user.0.reads_everyone() {
        return v;
    }
    let me = user.0.name.as_str();
    let settings = state.class;
    let finished = |c: &RunCell| matches!(c.status, JobStatus::Succeeded | JobStatus::StoppedEarly);
    for r in &mut v.runs {
        let others: Vec<f64> = v
            .students
            .iter()
            .filter(|s| s.student != me)
            .filter_map(|s| s.runs.iter().find(|c| c.section == r.section && c.label == r.label))
            .filter(|c| finished(c))
            .filter_map(|c| c.final_test_acc)
            .collect();
        let round = |x: f64| (x * 100.0).round() / 100.0;
        r.final_test_acc = class::quartiles(&others)
            .filter(|q| settings.band && q.n >= settings.min_students)
            .map(|q| Quartiles { q1: round(q.q1), median: round(q.median), q3: round(q.q3), n: q.n });
    }
    // N.B.: the counts of others' runs and divergences go with the quartiles, or not at all.
    v.runs.retain(|r| r.final_test_acc.is_some());
    v.students.retain(|r| r.student == me);
    for row in &mut v.students {
        row.flags.retain(|f| f.kind != "far_from_median" || (settings.band && f.peers >= settings.min_students));
        for f in &mut row.flags {
            f.message = std::mem::take(&mut f.student_message);
        }
    }
    v
}

/// `GET /class/{assignment}`: a row per student who submitted it, as JSON or as CSV for a
/// gradebook.
pub async fn get_class(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(q): Query<super::sweeps::FormatQuery>,
) -> Result<Response, ApiError> {
    let csv = super::jobs::wants_csv(q.format.as_deref())?;
    let a = assignment(&name)?;
    let subs = submissions(&state, &a).await?;
    let a2 = a.clone();
    let built = tokio::task::spawn_blocking(move || class::build(&a2, &subs))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let view = visible(&state, &user, built);
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"class-{}.csv\"", a.key)),
            ],
            class::csv(&view),
        )
            .into_response());
    }
    let mut body = serde_json::to_value(&view).map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("viewer".into(), serde_json::json!({"name": user.0.name, "role": user.0.role}));
        if user.0.reads_everyone() {
            obj.insert("report".into(), format!("/class/{}/report", a.key).into());
        }
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
pub struct ClassPlotQuery {
    section: Option<String>,
    metric: Option<String>,
    kind: Option<String>,
    student: Option<String>,
    format: Option<String>,
    width: Option<String>,
    height: Option<String>,
}

/// The figures a class plot can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Each run's curves, a line per student over the class's median band.
    Curves,
    /// Each run's spread of final test accuracy.
    Final,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::bad_request("bad_query", field, message)
}

fn size(field: &str, given: Option<&str>, default: u32, (lo, hi): (u32, u32)) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| bad(field, format!("{field} must be an integer from {lo} to {hi} pixels, got {s:?}"))),
    }
}

/// `GET /class/{assignment}/plot`: a section's curves across the class, or its spread of
/// final test accuracy. A student gets the curves only, their own line over the anonymous
/// band (when the band is on and enough others have the run).
pub async fn plot_class(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(q): Query<ClassPlotQuery>,
) -> Result<Response, ApiError> {
    let a = assignment(&name)?;
    let keys: Vec<&str> = a.sections.iter().map(|s| s.key.as_str()).collect();
    let section = match q.section.as_deref() {
        None => keys[0].to_string(),
        Some(s) if keys.contains(&s) => s.to_string(),
        // N.B.: another assignment's section names no section of this one: absent, as a
        // sweep's plot has it; a name no assignment has is a bad request.
        Some(s) if super::sweeps::preset_sections().any(|(x, _)| x.key == s) => {
            return Err(ApiError::NotFound(format!(
                "{} has no section {s:?}; its sections: {}",
                a.key,
                keys.join(", ")
            )))
        }
        Some(s) => {
            let all: Vec<&str> = super::sweeps::preset_sections().map(|(x, _)| x.key).collect();
            return Err(bad("section", format!("section must be one of {}, got {s:?}", all.join(", "))));
        }
    };
    let metric = match q.metric.as_deref() {
        None => Metric::TestAcc,
        Some(m) => Metric::ALL.into_iter().find(|x| x.as_str() == m).ok_or_else(|| {
            bad("metric", format!("metric must be one of test_acc, train_acc, test_loss, train_loss, got {m:?}"))
        })?,
    };
    let kind = match q.kind.as_deref() {
        None | Some("curves") => Kind::Curves,
        Some("final") => Kind::Final,
        Some(k) => return Err(bad("kind", format!("kind must be one of curves, final, got {k:?}"))),
    };
    let format = match q.format.as_deref() {
        None => Format::Png,
        Some(f) => {
            Format::parse(f).ok_or_else(|| bad("format", format!("format must be one of png, svg, got {f:?}")))?
        }
    };
    let width = size("width", q.width.as_deref(), 1000, plot::WIDTHS)?;
    let height = size("height", q.height.as_deref(), if kind == Kind::Final { 600 } else { 700 }, plot::HEIGHTS)?;
    if let Some(s) = q.student.as_deref().filter(|s| !queue::users::valid_name(s)) {
        return Err(bad(
            "student",
            format!("student must be a user name (1 to 64 characters of a-z, 0-9, '.', '_' and '-'), got {s:?}"),
        ));
    }
    let reader = user.0.reads_everyone();
    if let Some(s) = q.student.as_deref().filter(|_| !reader) {
        if s != user.0.name {
            return Err(ApiError::Forbidden("a student's class figure shows only themselves".into()));
        }
    }
    if !reader && kind == Kind::Final {
        return Err(ApiError::Forbidden(
            "the class's spread of results is for instructors; your own curves over the class's band are kind=curves"
                .into(),
        ));
    }
    let subs = submissions(&state, &a).await?;
    let me = user.0.name.clone();
    let slot = state.render_slot()?;
    let settings = state.class;
    let bytes = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        match kind {
            Kind::Final => {
                let view = class::build(&a, &subs);
                let mut fig = strip_figure(&a, &view, &section, q.student.as_deref());
                (fig.width, fig.height) = (width, height);
                plot::class::strip(&fig, format)
            }
            Kind::Curves if reader => {
                let mut fig = curves_figure(&a, &subs, &section, metric, q.student.as_deref(), None);
                (fig.width, fig.height) = (width, height);
                plot::class::curves(&fig, format)
            }
            Kind::Curves => {
                let mut fig = curves_figure(&a, &subs, &section, metric, None, Some(&me));
                // N.B.: the band is drawn from the others, and only from enough of them; the
                // x axis runs as far as the student's own curve and that band, so no one
                // else's longer run shows in it.
                let bands = bands(&subs, &a, &me, &section, metric, settings.min_students);
                for p in &mut fig.panels {
                    p.band = bands.get(&p.title).filter(|_| settings.band).cloned().unwrap_or_default();
                    let own = p.students.iter().flat_map(|c| c.points.iter().map(|pt| pt.0)).max();
                    p.epochs_total = own.into_iter().chain(p.band.last().map(|b| b.epoch)).max().unwrap_or(1);
                }
                fig.subtitle = format!(
                    "your {} per epoch over the class's median and middle half (from at least {} others)",
                    metric_words(metric),
                    settings.min_students
                );
                (fig.width, fig.height) = (width, height);
                plot::class::curves(&fig, format)
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [(header::CONTENT_TYPE, format.content_type().to_string()), (header::CACHE_CONTROL, "no-cache".to_string())],
        bytes,
    )
        .into_response())
}

/// The assignment a sweep ran and the class's submissions of it, for the band behind the
/// sweep's curves: refused for a sweep of no assignment, and to a student when the band
/// is off.
pub(super) async fn class_of(
    state: &AppState,
    user: &CurrentUser,
    sweep: &SweepRow,
) -> Result<(Assignment, Arc<Vec<Submission>>), ApiError> {
    let Some(a) = sweep.preset.as_deref().and_then(Assignment::of_preset) else {
        return Err(ApiError::bad_request(
            "bad_query",
            "class",
            "class=true compares an assignment's sweep (a preset's) with the class; this sweep is not one",
        ));
    };
    if !state.class.band && !user.0.reads_everyone() {
        return Err(ApiError::Forbidden(
            "the class's band is turned off on this server (TRAINYARD_CLASS_BAND=false)".into(),
        ));
    }
    Ok((a.clone(), submissions(state, &a).await?))
}

/// The class's bands for one section of a student's sweep, by run: the quartiles of the
/// other students' `metric` for the same run, at the epochs at least `min` of them have.
pub(super) fn bands(
    subs: &[Submission],
    a: &Assignment,
    owner: &str,
    section: &str,
    metric: Metric,
    min: usize,
) -> HashMap<String, Vec<BandPoint>> {
    let others: Vec<&Submission> = subs.iter().filter(|s| s.student != owner).collect();
    class::section_curves(a, others, section, metric)
        .into_iter()
        .filter_map(|(label, _, students)| {
            let band: Vec<BandPoint> = class::band(&students.into_iter().map(|(_, c)| c).collect::<Vec<_>>())
                .into_iter()
                .filter(|b| b.n >= min)
                .collect();
            (!band.is_empty()).then_some((label, band))
        })
        .collect()
}

/// `GET /class/{assignment}/report`: the class report (instructors and admins).
pub async fn get_class_report(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(q): Query<super::sweeps::FormatQuery>,
) -> Result<Response, ApiError> {
    if !user.0.reads_everyone() {
        return Err(ApiError::Forbidden("the class report is for instructors and admins".into()));
    }
    let kind = super::sweeps::ReportKind::parse(q.format.as_deref())?;
    let a = assignment(&name)?;
    let subs = submissions(&state, &a).await?;
    let file = format!("class-{}-report", a.key);
    let slot = state.render_slot()?;
    let drawn = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let r = class::report::ClassReport::new(&a, subs);
        kind.render(
            &file,
            || Ok(class::report::html(&r)),
            || Ok(class::report::markdown(&r)),
            || class::report::bundle(&r),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    super::sweeps::report_response(drawn?)
}

/// The class routes: the table, its figures, its report.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::get("/class/{assignment}", &["format"], get_class),
        Route::get(
            "/class/{assignment}/plot",
            &["section", "metric", "kind", "student", "format", "width", "height"],
            plot_class,
        ),
        Route::get("/class/{assignment}/report", &["format"], get_class_report),
    ]
}
