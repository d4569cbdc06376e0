//! Our JSON body extractor, so malformed and oversized bodies get our error shape too.
//! Any content type is read as JSON: `curl -d '{...}'` sends a form content type.
//! A key given twice in one object is refused (`{"epochs": 2000, "epochs": 1}` is a
//! mistake, and serde_json alone would keep the last one silently).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A request body parsed as JSON. An empty body is refused (`empty_body`): `curl -d ''`
/// is a slip, and reading it as `{}` would queue every default (a 50-epoch job).
pub struct JsonBody(pub Value);

/// The code of an empty body's error; `POST /jobs` says what `{}` would cost.
pub const EMPTY_BODY: &str = "empty_body";

/// What a duplicate key's error message starts with (then the key, JSON-quoted).
const DUPLICATE: &str = "duplicate key ";

/// A JSON value read like `serde_json::Value`, except that an object may not name a key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{}", Value::String(key))));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses `bytes` as one JSON value, refusing a key given twice in an object.
pub fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix(DUPLICATE) {
            Some(rest) => {
                let key = rest.split(" at line ").next().unwrap_or(rest);
                let field = serde_json::from_str::<String>(key).unwrap_or_else(|_| key.to_string());
                ApiError::BadRequest {
                    code: "duplicate_key",
                    message: format!("the key {key} is given twice in one object; give each key once ({message})"),
                    field: Some(field),
                }
            }
            None => ApiError::BadRequest {
                code: "malformed_json",
                message: format!("the body is not valid JSON: {message}"),
                field: None,
            },
        }
    })
}

/// `v` with every object's keys in sorted order, as text: two bodies that differ only in
/// the order of their keys are the same request (an Idempotency-Key's comparison).
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The request's body, within `BODY_LIMIT`.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(BODY_LIMIT)
        } else {
            ApiError::BadRequest { code: "bad_body", message: r.body_text(), field: None }
        }
    })
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest {
                code: EMPTY_BODY,
                message: "the body is empty; send a JSON object (`-d '{}'` for every default)".into(),
                field: Some("(body)".into()),
            });
        }
        parse(&bytes).map(JsonBody)
    }
}

/// `Option<JsonBody>`: an empty body is `None` (a route whose body is optional, such as
/// `POST /jobs/{id}/resume`); anything else must be JSON, as for `JsonBody`.
impl<S: Send + Sync> axum::extract::OptionalFromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse(&bytes).map(|v| Some(JsonBody(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_and_named() {
        for body in [r#"{"epochs": 2000, "epochs": 1}"#, r#"{"base": {"lr": 0.1}, "vary": {"lr": [1], "lr": [2]}}"#] {
            let ApiError::BadRequest { code, field, message } = parse(body.as_bytes()).unwrap_err() else { panic!() };
            assert_eq!(code, "duplicate_key");
            assert!(matches!(field.as_deref(), Some("epochs" | "lr")), "{field:?}");
            assert!(message.contains("given twice"), "{message}");
        }
        let v = parse(br#"{"a": [1, 2.5, -3, {"b": null}], "c": "\u00e9", "d": 18446744073709551615}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2.5, -3, {"b": null}], "c": "é", "d": 18446744073709551615u64}));
        assert!(matches!(parse(b"{\"a\": 1,}"), Err(ApiError::BadRequest { code: "malformed_json", .. })));
    }

    #[test]
    fn the_canonical_form_ignores_key_order_only() {
        let a = parse(br#"{"b": 1, "a": {"y": [2, 1], "x": 0}}"#).unwrap();
        let b = parse(br#"{"a": {"x": 0, "y": [2, 1]}, "b": 1}"#).unwrap();
        let c = parse(br#"{"a": {"x": 0, "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&c));
    }
}
