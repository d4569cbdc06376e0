//! Our JSON body extractor, so malformed and oversized bodies get our error shape too.
//! Any content type is read as JSON: `curl -d '{...}'` sends a form content type.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::Value;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A request body parsed as JSON; an empty body reads as `{}`.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(BODY_LIMIT)
            } else {
                ApiError::BadRequest { code: "bad_body", message: r.body_text(), field: None }
            }
        })?;
        // N.B.: only a body with nothing in it is the default; "\n" is not JSON.
        if bytes.is_empty() {
            return Ok(JsonBody(Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::BadRequest {
            code: "malformed_json",
            message: format!("the body is not valid JSON: {e}"),
            field: None,
        })
    }
}
