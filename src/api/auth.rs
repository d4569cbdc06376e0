//! Who is asking: `Authorization: Bearer <token>` on every route but /healthz and
//! /openapi.yaml, and a request rate per token.

use super::error::ApiError;
use super::AppState;
use crate::queue::users::{self, User};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The user a request acts as, and the SHA-256 of the token it came with (so an event stream
/// can ask again whether that token still works); extracting it checks the token and the
/// rate limit.
pub struct CurrentUser(pub User, pub String);

impl CurrentUser {
    /// Whether this user may read what `owner_id` owns (a job, a sweep, its report and
    /// events): their own, or anyone's for an instructor or an admin.
    pub fn may_see(&self, owner_id: i64) -> bool {
        self.0.reads_everyone() || self.0.id == owner_id
    }

    /// Whether this user may change what `owner_id` owns (cancel, resume): their own, or
    /// anyone's for an admin. An instructor reads the class's jobs but leaves them alone.
    pub fn may_manage(&self, owner_id: i64) -> bool {
        self.0.is_admin() || self.0.id == owner_id
    }

    /// `Ok` when this user may change what `owner_id` owns; else the 403 that says who may
    /// (`verb` is what was asked: "cancel this job"). Only a reader of everyone's jobs gets
    /// here for another's: to a student, another's job is as absent as a missing one.
    pub fn manage(&self, owner_id: i64, verb: &str) -> Result<(), ApiError> {
        if self.may_manage(owner_id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only its owner or an admin can {verb}; as {}, you can read it but not change it",
                match self.0.role {
                    users::Role::Instructor => "an instructor",
                    _ => "a student",
                }
            )))
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // N.B.: the scheme is case-insensitive (RFC 9110, 11.1): "bearer" is "Bearer".
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("this route needs `Authorization: Bearer <token>`; an admin makes tokens with `trainyard users add NAME`".into())
            })?;
        let user = users::user_by_token(&state.pool, token)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the bearer token is not valid (unknown or revoked)".into()))?;
        if let Some(slot) = parts.extensions.get::<super::access::AccessSlot>() {
            slot.set_user(&user.name);
        }
        state.limiter.check(user.id)?;
        Ok(CurrentUser(user, users::hash_token(token)))
    }
}

/// A token bucket per user: `rate` requests a second, bursts of twice that.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` 0 turns the limit off.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter { rate, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, user: i64) -> Result<(), ApiError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let burst = (2.0 * self.rate).max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = buckets.entry(user).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
        Err(ApiError::TooMany {
            message: format!(
                "too many requests: the limit is {} per second per token (TRAINYARD_RATE_LIMIT); retry in {wait} s",
                self.rate
            ),
            retry_after: Some(wait),
        })
    }
}
