//! `GET /datasets`: every dataset this server can name, with its shape, classes and split
//! sizes, and whether it is here now (present, missing, corrupt, being fetched, and why);
//! and the check that a submitted spec's dataset can be trained here.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{AppState, Route};
use crate::dataset::Dataset;
use crate::queue::problems::Problem;
use crate::spec::FieldError;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

pub(super) fn routes() -> Vec<Route> {
    vec![Route::get("/datasets", &[], list_datasets)]
}

/// Whether a dataset is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataState {
    /// Its files are in the store (their sizes fit; the first load checks the rest).
    Present,
    /// Its files are not there; `fetchable` says whether the first job fetches them.
    Missing,
    /// Its files are there but do not read (a worker's load failed, or a size is wrong).
    Corrupt,
    /// A worker is fetching it now.
    Fetching,
}

/// One dataset as `GET /datasets` shows it.
#[derive(Debug, Serialize)]
pub struct DatasetView {
    #[serde(skip)]
    dataset: &'static Dataset,
    pub name: &'static str,
    pub title: &'static str,
    /// [channels, height, width] of one image.
    pub shape: [i64; 3],
    pub classes: &'static [&'static str],
    pub num_classes: i64,
    pub train_images: u64,
    pub test_images: u64,
    /// Per channel, as torchvision's `Normalize(mean, std)`.
    pub mean: &'static [f64],
    pub std: &'static [f64],
    /// Built in (else a lab's own import).
    pub builtin: bool,
    pub state: DataState,
    /// Why it is not present, and what to do.
    pub why: Option<String>,
    /// Whether a job that needs it fetches it when it is missing.
    pub fetchable: bool,
}

#[derive(Serialize)]
struct DatasetList {
    datasets: Vec<DatasetView>,
}

/// Reads the store's imports into this process's registry (a dataset imported since is
/// nameable at once); returns this store's datasets.
pub async fn refresh(state: &AppState) -> Vec<&'static Dataset> {
    let store = state.store.clone();
    let scanned = tokio::task::spawn_blocking(move || crate::dataset::scan_store(&store)).await;
    let (found, bad) = scanned.unwrap_or_else(|_| (crate::dataset::BUILTIN.to_vec(), Vec::new()));
    for (dir, why) in bad {
        tracing::warn!(dir = %dir.display(), error = %why, "a dataset's description does not read");
    }
    found
}

/// The state of `datasets` (this store's, from `refresh`), with the problems workers
/// recorded for each.
async fn views(state: &AppState, datasets: Vec<&'static Dataset>) -> Result<Vec<DatasetView>, ApiError> {
    let problems = crate::queue::problems::list_problems(&state.pool).await?;
    let store = state.store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        datasets
            .into_iter()
            .map(|d| (d, crate::dataset::check_present(d, &store).err().map(|e| (e.state(), e.to_string()))))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("checking the datasets: {e}")))?;
    Ok(checked.into_iter().map(|(d, files)| view(d, files, &problems, &state.store)).collect())
}

fn view(
    d: &'static Dataset,
    files: Option<(&'static str, String)>,
    problems: &[Problem],
    store: &std::path::Path,
) -> DatasetView {
    let mine: Vec<&Problem> = problems.iter().filter(|p| p.dataset() == Some(d.name)).collect();
    let fetch = mine.iter().find(|p| p.is_fetch());
    // N.B.: a worker's failure is about the files as they were: files changed since (an
    // admin's fix) are judged afresh by their presence.
    let dir = d.locate(store);
    let changed = |since: i64| {
        let newest = d.files().filter_map(|f| crate::dataset::formats::file_in(d, &dir, f)).filter_map(|p| {
            let m = std::fs::metadata(p).ok()?.modified().ok()?;
            Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
        });
        newest.max().is_some_and(|t| t >= since)
    };
    let failed = mine.iter().find(|p| !p.is_fetch() && !changed(p.since));
    let fetchable = d.download.is_some() && crate::fetch::is_empty_dir(&dir);
    let (state, why) = match (files, fetch, failed) {
        (None, _, Some(p)) => (DataState::Corrupt, Some(p.message.clone())),
        (None, _, None) => (DataState::Present, None),
        (_, Some(p), _) => (DataState::Fetching, Some(p.message.clone())),
        (Some(("missing", _)), _, Some(p)) => (DataState::Missing, Some(p.message.clone())),
        (Some(("missing", _)), _, None) if fetchable => (
            DataState::Missing,
            Some(format!(
                "{} is not in {} yet: the first job that needs it fetches it, or an admin runs `trainyard data fetch {}`",
                d.title,
                d.home(store).display(),
                d.name
            )),
        ),
        (Some(("missing", why)), _, _) => (DataState::Missing, Some(why)),
        (Some((_, why)), _, _) => (DataState::Corrupt, Some(why)),
    };
    DatasetView {
        dataset: d,
        name: d.name,
        title: d.title,
        shape: [d.channels, d.height, d.width],
        classes: d.classes,
        num_classes: d.num_classes(),
        train_images: d.train_images,
        test_images: d.test_images,
        mean: d.mean,
        std: d.std,
        builtin: d.is_builtin(),
        state,
        why,
        fetchable,
    }
}

/// Every dataset this server can name and whether it is here.
async fn list_datasets(State(state): State<AppState>, _user: CurrentUser) -> Result<Json<DatasetList>, ApiError> {
    let datasets = refresh(&state).await;
    Ok(Json(DatasetList { datasets: views(&state, datasets).await? }))
}

/// The spec's dataset can be trained here, now or once the box's own problem is fixed: its
/// files are present, being fetched, or damaged (an admin's fix: the job waits, saying
/// why, as every job did before datasets), or it is a built-in one whose empty folder the
/// first job fills by fetching. A dataset that is missing and cannot be fetched (a lab's
/// import whose folder is gone, a built-in one half there) would wait for nothing
/// automatic: an error on `dataset` that says why and which datasets are here.
///
/// N.B.: an API that runs no workers (`serve --no-workers`) does not judge: the data is the
/// workers' machines', and its jobs wait until a worker that has it takes them.
/// `store` is this store's datasets, as the handler's `refresh` gave them.
pub async fn unavailable(
    state: &AppState,
    store: Vec<&'static Dataset>,
    datasets: &[&'static Dataset],
) -> Result<Vec<FieldError>, ApiError> {
    if state.data_dir.is_none() {
        return Ok(Vec::new());
    }
    let mut wanted: Vec<&'static Dataset> = datasets.to_vec();
    wanted.sort_by_key(|d| d.name);
    wanted.dedup_by_key(|d| d.name);
    let all = views(state, store).await?;
    let here: Vec<&str> = all.iter().filter(|v| v.state == DataState::Present).map(|v| v.name).collect();
    let mut errors = Vec::new();
    for d in wanted {
        // N.B.: a dataset this process knows from another store is not in this one.
        let why = || format!("{} is not in {}", d.title, state.store.display());
        let why = match all.iter().find(|v| std::ptr::eq(v.dataset, d)) {
            Some(v) if v.state != DataState::Missing || v.fetchable => continue,
            Some(v) => v.why.clone().unwrap_or_else(why),
            None => why(),
        };
        errors.push(FieldError {
            field: "dataset".into(),
            message: format!(
                "{:?} cannot be trained on this server now: {why}; datasets here: {}",
                d.name,
                if here.is_empty() { "none".to_string() } else { here.join(", ") }
            ),
        });
    }
    Ok(errors)
}
