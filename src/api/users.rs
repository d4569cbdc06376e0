//! /me and /users: who the caller is, and an admin's accounts (what `trainyard users` does,
//! for the web page's admin view). A token is shown once, in the answer that made it.

use super::auth::CurrentUser;
use super::error::ApiError;
use super::jobs::rfc3339;
use super::json::JsonBody;
use super::AppState;
use super::Route;
use crate::queue::users::{self, Role, User, UserError};
use crate::queue::{self};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "role": u.role,
        "admin": u.is_admin(),
        "created_at": rfc3339(Some(u.created_at)),
        "revoked_at": rfc3339(u.revoked_at),
    })
}

/// A user as shown with the token just made for them (the only time it is seen).
fn with_token(u: &User, token: &str) -> Value {
    let mut v = user_json(u);
    v.as_object_mut().expect("an object").insert("token".into(), json!(token));
    v
}

/// The user named `name` as stored now.
async fn reread(state: &AppState, name: &str) -> Result<User, ApiError> {
    Ok(users::user_by_name(&state.pool, name).await?.ok_or_else(|| UserError::NotFound(name.into()))?)
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Exists(_) => ApiError::Conflict(e.to_string()),
            UserError::BadName(_) => ApiError::Unprocessable(e.to_string()),
            UserError::NotFound(_) => ApiError::NotFound(e.to_string()),
            UserError::AlreadyRevoked(_) => ApiError::Conflict(e.to_string()),
            UserError::Queue(q) => q.into(),
        }
    }
}

fn admin_only(user: &CurrentUser) -> Result<(), ApiError> {
    if user.0.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only admins manage users".into()))
    }
}

/// An admin acting on another user by name: never on themselves here (`what` they would
/// lose, and the `command` that can).
fn another_user(user: &CurrentUser, name: &str, what: &str, command: &str) -> Result<(), ApiError> {
    admin_only(user)?;
    if name == user.0.name {
        return Err(ApiError::Conflict(format!("{what}; use `trainyard users {command}`")));
    }
    Ok(())
}

/// The caller, and what this server allows them (what the web page needs to know).
pub async fn get_me(State(state): State<AppState>, user: CurrentUser) -> Json<Value> {
    let mut v = user_json(&user.0);
    let l = &state.limits;
    v.as_object_mut().expect("an object").insert(
        "limits".into(),
        json!({
            "max_queued_jobs": l.max_queued,
            "max_epochs_per_job": l.max_epochs,
            "max_parameters": l.max_parameters,
            "max_job_memory_mb": l.max_job_memory_mb,
            "max_streams": l.max_streams,
        }),
    );
    Json(v)
}

pub async fn list_users(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let all = users::list_users(&state.pool).await?;
    Ok(Json(json!({"users": all.iter().map(user_json).collect::<Vec<_>>()})))
}

/// `{"name", "role"?}` → the new user with their token. `role` is student (the default),
/// instructor or admin; `"admin": true`, the older form, still means `"role": "admin"`.
pub async fn create_user(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin_only(&user)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request("bad_body", "(body)", "the body must be a JSON object {\"name\", \"role\"}"));
    };
    if let Some(k) = obj.keys().find(|k| !["name", "role", "admin"].contains(&k.as_str())) {
        return Err(ApiError::bad_request("bad_body", k, format!("unknown field {k:?}; allowed: name, role, admin")));
    }
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "bad_name",
                "name",
                "name is required: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'",
            ))
        }
        Some(v) => {
            return Err(ApiError::bad_request(
                "bad_name",
                "name",
                format!("name must be a string of a-z, 0-9, '.', '_' and '-', got {v}"),
            ))
        }
    };
    let role = match obj.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Role::parse(s).map_err(|e| ApiError::bad_request("bad_role", "role", e.to_string()))?)
        }
        Some(v) => {
            return Err(ApiError::bad_request(
                "bad_role",
                "role",
                format!("role must be one of \"student\", \"instructor\", \"admin\"; got {v}"),
            ))
        }
    };
    let admin = match obj.get("admin") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            return Err(ApiError::bad_request("bad_body", "admin", format!("admin must be true or false, got {v}")))
        }
    };
    let role = match (role, admin) {
        (Some(r), Some(a)) if a != (r == Role::Admin) => {
            return Err(ApiError::bad_request(
                "bad_role",
                "admin",
                format!("admin: {a} contradicts role: \"{r}\"; give role alone"),
            ))
        }
        (Some(r), _) => r,
        (None, Some(true)) => Role::Admin,
        (None, _) => Role::Student,
    };
    let (made, token) = users::add_user(&state.pool, name, role, queue::now_ms()).await?;
    tracing::info!(user.name = %made.name, by = %user.0.name, %role, "user added");
    Ok((StatusCode::CREATED, Json(with_token(&made, &token))))
}

/// Revokes a user's token at once; their jobs stay. An admin cannot revoke themselves here
/// (the page would lock them out); `trainyard users revoke` can.
pub async fn revoke_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    another_user(&user, &name, "you cannot revoke your own token here (you would be locked out)", "revoke")?;
    users::revoke_user(&state.pool, &name, queue::now_ms()).await?;
    tracing::info!(user.name = %name, by = %user.0.name, "user revoked");
    Ok(Json(user_json(&reread(&state, &name).await?)))
}

/// Rewrites the admin's token file if it held the token just replaced; a failure is logged
/// (the new token is in the answer either way).
pub fn replace_token_file(path: &std::path::Path, old_hash: &str, token: &str) {
    match crate::token_file::replace_if_held(path, old_hash, token) {
        Ok(true) => tracing::info!(file = %path.display(), "the admin token file holds the new token"),
        Ok(false) => {}
        Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot rewrite the admin token file"),
    }
}

/// A new token for the user (a revoked one is restored); the old one stops working at once.
/// Not one's own (the CLI does that).
pub async fn rotate_token(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    another_user(&user, &name, "you cannot re-issue your own token here (this session would end)", "rotate")?;
    let (token, old) = users::rotate_token(&state.pool, &name).await?;
    replace_token_file(&state.admin_token_file, &old, &token);
    tracing::info!(user.name = %name, by = %user.0.name, "token re-issued");
    Ok(Json(with_token(&reread(&state, &name).await?, &token)))
}

/// The caller's account, and the users admins manage.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::get("/me", &[], get_me),
        Route::get("/users", &[], list_users),
        Route::post("/users", create_user),
        Route::post("/users/{name}/revoke", revoke_user),
        Route::post("/users/{name}/token", rotate_token),
    ]
}
