//! The one error type at the HTTP edge: a status and a JSON body
//! `{"error": {"code", "message", "field"?, "fields"?}}`. 5xx bodies say nothing internal;
//! the cause is logged once.

use crate::spec::FieldError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, a bad query parameter).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, field: Option<String> },
    /// The experiment spec is invalid; every bad field is listed.
    #[error("invalid experiment spec")]
    Invalid(Vec<FieldError>),
    /// The request is well-formed but cannot be done (an idempotency key reused).
    #[error("{0}")]
    Unprocessable(String),
    /// No or a bad bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The user may not do this (an admin's action).
    #[error("{0}")]
    Forbidden(String),
    /// No such job (or a malformed id, or another user's job).
    #[error("{0}")]
    NotFound(String),
    /// A limit was reached; `retry_after` seconds when waiting helps.
    #[error("{message}")]
    TooMany { message: String, retry_after: Option<u64> },
    /// The job is in a state that forbids this.
    #[error("{0}")]
    Conflict(String),
    /// The route exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is over the limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The URI is over the limit (a query string with thousands of job ids, say).
    #[error("the request's URI is longer than {0} bytes; ask for fewer items at once")]
    UriTooLong(usize),
    /// The request took longer than the server allows.
    #[error("the request took longer than {0} s; try again, or ask for less")]
    Timeout(u64),
    /// The box cannot do it now (its database's disk is full, or its database file is
    /// gone); `/readyz` says why too.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::queue::QueueError> for ApiError {
    fn from(e: crate::queue::QueueError) -> Self {
        // N.B.: a full disk is the box's state, not a bug: say so (503), once per request.
        if e.is_disk_full() {
            tracing::warn!(error = %e, "a write failed: the database's disk refused it");
            return ApiError::Unavailable(
                "the box's disk is full (or refuses writes), so nothing can be written now; nothing was changed: try \
                 again once an admin has freed space (GET /readyz says when)"
                    .into(),
            );
        }
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into(), field: Some(field.into()) }
    }

    /// An Idempotency-Key sent again with another body (`what`: "job", "sweep").
    pub fn key_reused(what: &str) -> ApiError {
        ApiError::Unprocessable(format!(
            "this Idempotency-Key was already used with a different request body; use a new key for a new {what}"
        ))
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = match &self {
            ApiError::BadRequest { code, message, field } => {
                json!({"error": {"code": code, "message": message, "field": field}})
            }
            ApiError::Invalid(fields) => {
                let summary: Vec<String> = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
                json!({"error": {
                    "code": "invalid_spec",
                    "message": format!("invalid experiment spec: {}", summary.join("; ")),
                    "field": fields.first().map(|f| f.field.clone()),
                    "fields": fields,
                }})
            }
            ApiError::Unprocessable(m) => json!({"error": {"code": "unprocessable", "message": m}}),
            ApiError::Unauthorized(m) => json!({"error": {"code": "unauthorized", "message": m}}),
            ApiError::Forbidden(m) => json!({"error": {"code": "forbidden", "message": m}}),
            ApiError::NotFound(m) => json!({"error": {"code": "not_found", "message": m}}),
            ApiError::TooMany { message, .. } => json!({"error": {"code": "too_many", "message": message}}),
            ApiError::Conflict(m) => json!({"error": {"code": "conflict", "message": m}}),
            ApiError::MethodNotAllowed(m) => json!({"error": {"code": "method_not_allowed", "message": m}}),
            ApiError::TooLarge(_) => json!({"error": {"code": "payload_too_large", "message": self.to_string()}}),
            ApiError::UriTooLong(_) => json!({"error": {"code": "uri_too_long", "message": self.to_string()}}),
            ApiError::Timeout(_) => json!({"error": {"code": "timeout", "message": self.to_string()}}),
            ApiError::Unavailable(m) => json!({"error": {"code": "unavailable", "message": m}}),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                json!({"error": {"code": "internal", "message": "internal server error"}})
            }
        };
        let mut response = (status, Json(strip_nulls(body))).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            }
            ApiError::TooMany { retry_after: Some(s), .. } => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*s));
            }
            ApiError::Unavailable(_) => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(10));
            }
            _ => {}
        }
        response
    }
}

/// Drops `"field": null` and the like from error bodies.
fn strip_nulls(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(inner) = v.get_mut("error").and_then(|e| e.as_object_mut()) {
        inner.retain(|_, v| !v.is_null());
    }
    v
}
