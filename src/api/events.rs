//! Server-Sent Events: `GET /jobs/{id}/events` (one job: its history, then what happens,
//! then `done`) and `GET /events` (everything of the caller's jobs, instructors' and admins': everyone's, from
//! now on). Each stream reads the database's event log, so a job trained in another process
//! streams too; this process's hub wakes it at once, others' changes show within
//! `POLL`. Events that carry state have the log's `seq` as id, so a client reconnecting with
//! `Last-Event-ID` gets exactly what it missed; `progress` events are fleeting and have none.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::jobs::{job_json, load, progress_json, rfc3339};
use super::AppState;
use super::Route;
use crate::job::JobStatus;
use crate::queue;
use crate::queue::events::{Logged, Scope};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a stream looks at the database when nothing in this process told it to.
pub const POLL: Duration = Duration::from_millis(500);
/// Logged events sent per database read.
const PAGE: i64 = 500;

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<axum::response::sse::KeepAliveStream<Events>>;

/// The `Last-Event-ID` a reconnecting client sends: the `seq` of the last event it got.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else { return Ok(None) };
    v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n >= 0).map(Some).ok_or_else(|| {
        ApiError::bad_request(
            "bad_header",
            "Last-Event-ID",
            "Last-Event-ID must be the id of an event this server sent",
        )
    })
}

/// The SSE response around what `produce` sends.
fn respond(rx: mpsc::Receiver<Event>) -> EventStream {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Sse::new(Box::pin(stream) as Events).keep_alive(KeepAlive::default())
}

/// A logged event as sent: `status` or `epoch` (the row as in /metrics), with the job's id
/// and when it was logged.
fn logged(e: &queue::events::EventRow) -> Event {
    let data = match &e.what {
        Logged::Epoch(m) => {
            let mut row = serde_json::to_value(m).unwrap_or(Value::Null);
            if let Some(o) = row.as_object_mut() {
                o.insert("job".into(), json!(e.job_id));
                o.insert("at".into(), rfc3339(Some(e.at)));
            }
            row
        }
        Logged::Status(status) => json!({"job": e.job_id, "status": status, "at": rfc3339(Some(e.at))}),
    };
    Event::default().event(e.what.kind()).id(e.seq.to_string()).data(data.to_string())
}

/// How far `send_logged` got.
enum Sent {
    /// Every logged event so far is out.
    AllSoFar,
    /// A page went out and more may wait.
    More,
    /// The client left, or the database did not answer: the stream ends (a client
    /// reconnects with Last-Event-ID).
    Stop,
}

/// Sends the logged events of `scope` after `after` (one page), advancing `after`.
async fn send_logged(state: &AppState, scope: &Scope, after: &mut i64, tx: &mpsc::Sender<Event>) -> Sent {
    let Ok(rows) = queue::events::events_after(&state.pool, scope, *after, PAGE).await else { return Sent::Stop };
    for e in &rows {
        *after = e.seq;
        if tx.send(logged(e)).await.is_err() {
            return Sent::Stop;
        }
    }
    if rows.len() as i64 == PAGE {
        Sent::More
    } else {
        Sent::AllSoFar
    }
}

fn progress_event(job: &str, p: &Value) -> Event {
    let mut p = p.clone();
    if let Some(o) = p.as_object_mut() {
        o.insert("job".into(), json!(job));
    }
    Event::default().event("progress").data(p.to_string())
}

/// Waits for word of a change in this process (for `only`, if given) or the poll interval;
/// false when the stream must end: a shutdown, or the client went away (so its place in the
/// per-user count frees at once, not at the next event).
async fn wait(
    changed: &mut tokio::sync::broadcast::Receiver<String>,
    closing: &mut tokio::sync::watch::Receiver<bool>,
    client: &mpsc::Sender<Event>,
    only: Option<&str>,
) -> bool {
    let sleep = tokio::time::sleep(POLL);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            got = changed.recv() => match got {
                Ok(id) if only.is_some_and(|o| o != id) => continue,
                _ => return true,
            },
            _ = &mut sleep => return true,
            _ = closing.wait_for(|c| *c) => return false,
            _ = client.closed() => return false,
        }
    }
}

/// Whether the stream's token still works; when it does not (revoked, or replaced by a new
/// one), sends the final `unauthorized` event that says so, and the stream ends. A database
/// that does not answer ends the stream too (the client reconnects with Last-Event-ID).
async fn still_authorized(state: &AppState, token_hash: &str, tx: &mpsc::Sender<Event>) -> bool {
    match queue::users::token_is_valid(&state.pool, token_hash).await {
        Ok(true) => true,
        Ok(false) => {
            let why = json!({"error": {
                "code": "unauthorized",
                "message": "the bearer token was revoked or replaced; this stream ends (sign in with the new token)",
            }});
            let _ = tx.send(Event::default().event("unauthorized").data(why.to_string())).await;
            false
        }
        Err(_) => false,
    }
}

fn too_many(state: &AppState) -> ApiError {
    ApiError::TooMany {
        message: format!(
            "you have {} event streams open, the most this server allows per user (TRAINYARD_MAX_STREAMS_PER_USER); \
             close one",
            state.limits.max_streams
        ),
        retry_after: None,
    }
}

/// `GET /jobs/{id}/events`.
pub async fn job_events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    let after = last_event_id(&headers)?.unwrap_or(0);
    let id = load(&state, &user, &id).await?.id;
    let guard = state.hub.open_stream(user.0.id, state.limits.max_streams).ok_or_else(|| too_many(&state))?;
    let (tx, rx) = mpsc::channel(64);
    let token = user.1;
    tokio::spawn(async move {
        let _open = guard;
        let (mut changed, mut closing) = (state.hub.subscribe(), state.hub.closing());
        let (mut after, mut last_progress) = (after, None::<Value>);
        loop {
            if !still_authorized(&state, &token, &tx).await {
                return;
            }
            match send_logged(&state, &Scope::Job(id.clone()), &mut after, &tx).await {
                Sent::AllSoFar => {}
                Sent::More => continue,
                Sent::Stop => return,
            }
            let Ok(Some(row)) = queue::get_job(&state.pool, &id).await else { break };
            if row.status.is_finished() {
                // The finishing event is logged in the same transaction as the status, but it
                // may have committed between the read above and this one: read the log to its
                // end once more, so `done` comes after every event and carries the last id.
                loop {
                    match send_logged(&state, &Scope::Job(id.clone()), &mut after, &tx).await {
                        Sent::AllSoFar => break,
                        Sent::More => continue,
                        Sent::Stop => return,
                    }
                }
                let done = Event::default()
                    .event("done")
                    .id(after.to_string())
                    .data(job_json(&row, &HashMap::new()).to_string());
                let _ = tx.send(done).await;
                return;
            }
            if let Some(p) = progress_json(&row).filter(|p| last_progress.as_ref() != Some(p)) {
                if tx.send(progress_event(&id, &p)).await.is_err() {
                    return;
                }
                last_progress = Some(p);
            }
            if !wait(&mut changed, &mut closing, &tx, Some(&id)).await {
                return;
            }
        }
    });
    Ok(respond(rx))
}

/// `GET /events`: what happens to the caller's jobs (instructors and admins: everyone's) from now on, or
/// after `Last-Event-ID`.
pub async fn all_events(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    let after = match last_event_id(&headers)? {
        Some(n) => n,
        None => queue::events::last_seq(&state.pool).await?,
    };
    let guard = state.hub.open_stream(user.0.id, state.limits.max_streams).ok_or_else(|| too_many(&state))?;
    let scope = if user.0.reads_everyone() { Scope::Everyone } else { Scope::Owner(user.0.id) };
    let owner = (!user.0.reads_everyone()).then_some(user.0.id);
    let (tx, rx) = mpsc::channel(64);
    let token = user.1;
    tokio::spawn(async move {
        let _open = guard;
        let (mut changed, mut closing) = (state.hub.subscribe(), state.hub.closing());
        let mut after = after;
        let mut last_progress: HashMap<String, Value> = HashMap::new();
        loop {
            if !still_authorized(&state, &token, &tx).await {
                return;
            }
            match send_logged(&state, &scope, &mut after, &tx).await {
                Sent::AllSoFar => {}
                Sent::More => continue,
                Sent::Stop => return,
            }
            let Ok(running) = queue::list_jobs(&state.pool, owner, Some(JobStatus::Running), 200, None).await else {
                break;
            };
            last_progress.retain(|id, _| running.iter().any(|r| &r.id == id));
            for row in &running {
                let Some(p) = progress_json(row) else { continue };
                if last_progress.get(&row.id) != Some(&p) {
                    if tx.send(progress_event(&row.id, &p)).await.is_err() {
                        return;
                    }
                    last_progress.insert(row.id.clone(), p);
                }
            }
            if !wait(&mut changed, &mut closing, &tx, None).await {
                return;
            }
        }
    });
    Ok(respond(rx))
}

/// The event streams: one job's, and everything of the caller's jobs.
pub(super) fn routes() -> Vec<Route> {
    vec![Route::get("/jobs/{id}/events", &[], job_events), Route::get("/events", &[], all_events)]
}
