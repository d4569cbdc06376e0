//! The access log: one line per request at info — method, route template (never the ids in
//! the path, never the query), status, duration and the user's name; never a token.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// What the request's inner layers learn for its log line: the route it matched and who
/// made it (the auth extractor fills that in).
#[derive(Clone, Default)]
pub struct AccessSlot(Arc<Mutex<(Option<String>, Option<String>)>>);

impl AccessSlot {
    pub fn set_user(&self, name: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).1 = Some(name.to_string());
    }

    fn set_route(&self, route: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 = Some(route.to_string());
    }
}

/// The outermost layer: writes the line once the response is ready.
pub async fn access_log(mut req: Request, next: Next) -> Response {
    let slot = AccessSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let (route, user) = slot.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    tracing::info!(
        target: "trainyard::access",
        method = %method,
        route = route.as_deref().unwrap_or("(no route)"),
        status = response.status().as_u16(),
        ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        user = user.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// A route layer: notes the matched route's template for the log line.
pub async fn note_route(matched: MatchedPath, req: Request, next: Next) -> Response {
    if let Some(slot) = req.extensions().get::<AccessSlot>() {
        slot.set_route(matched.as_str());
    }
    next.run(req).await
}
