//! Users and their tokens. A token is shown once, when made; the database keeps its SHA-256.

use super::{on_db, Pool, QueueError};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

/// What a user may do. A student sees and manages their own jobs and sweeps; an instructor
/// also reads everyone's (jobs, sweeps, reports, events, the class view) but manages only
/// their own; an admin manages everything and everyone (priorities, users, tokens, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

/// A role name that is none of `Role::NAMES`.
#[derive(Debug, thiserror::Error)]
#[error("role must be one of student, instructor, admin; got {0:?}")]
pub struct UnknownRole(pub String);

impl Role {
    pub const NAMES: [&'static str; 3] = ["student", "instructor", "admin"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Instructor => "instructor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "student" => Ok(Role::Student),
            "instructor" => Ok(Role::Instructor),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole(s.into())),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Role, UnknownRole> {
        Role::parse(&s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl User {
    /// Manages everything and everyone.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Reads every user's jobs, sweeps, reports and events (an instructor or an admin).
    pub fn reads_everyone(&self) -> bool {
        self.role >= Role::Instructor
    }
}

/// A new random token: 256 bits from the OS, hex, with a prefix that makes it recognisable.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    format!("ty_{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// The name is not of the allowed form.
    #[error("user names are 1 to 64 characters of a-z, 0-9, '.', '_' and '-'; got {0:?}")]
    BadName(String),
    /// No such user.
    #[error("no user named {0:?}")]
    NotFound(String),
    /// The user's token is already revoked.
    #[error("{0:?} is already revoked; `trainyard users rotate {0}` gives them a new token")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<sqlx::Error> for UserError {
    fn from(e: sqlx::Error) -> Self {
        UserError::Queue(e.into())
    }
}

/// Whether `name` is of the form user names take.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Creates a user; returns the user and their token (the only time it is seen).
pub async fn add_user(pool: &Pool, name: &str, role: Role, now: i64) -> Result<(User, String), UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName(name.into()));
    }
    let token = new_token();
    const SQL: &str = "INSERT INTO users (name, token_hash, role, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO NOTHING RETURNING id, name, role, created_at, revoked_at";
    let inserted: Option<User> = on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL))
        .bind(name)
        .bind(hash_token(&token))
        .bind(role.as_str())
        .bind(now)
        .fetch_optional(p)
        .await?);
    match inserted {
        Some(user) => Ok((user, token)),
        None => Err(UserError::Exists(name.into())),
    }
}

/// The user a token belongs to, unless revoked.
pub async fn user_by_token(pool: &Pool, token: &str) -> Result<Option<User>, QueueError> {
    const SQL: &str =
        "SELECT id, name, role, created_at, revoked_at FROM users WHERE token_hash = ? AND revoked_at IS NULL";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(hash_token(token)).fetch_optional(p).await?))
}

/// Whether the token with this SHA-256 still belongs to an unrevoked user (an open event
/// stream asks on each poll: a revoked or replaced token stops it).
pub async fn token_is_valid(pool: &Pool, token_hash: &str) -> Result<bool, QueueError> {
    const SQL: &str = "SELECT COUNT(*) FROM users WHERE token_hash = ? AND revoked_at IS NULL";
    let n: i64 = on_db!(Pool, pool, |p, d| sqlx::query_scalar(&d.sql(SQL)).bind(token_hash).fetch_one(p).await?);
    Ok(n > 0)
}

/// The user named `name`, revoked or not. A name no user can have (a NUL, which
/// PostgreSQL cannot even compare) matches nobody without asking the database.
pub async fn user_by_name(pool: &Pool, name: &str) -> Result<Option<User>, QueueError> {
    if !valid_name(name) {
        return Ok(None);
    }
    const SQL: &str = "SELECT id, name, role, created_at, revoked_at FROM users WHERE name = ?";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(name).fetch_optional(p).await?))
}

pub async fn list_users(pool: &Pool) -> Result<Vec<User>, QueueError> {
    const SQL: &str = "SELECT id, name, role, created_at, revoked_at FROM users ORDER BY id";
    Ok(on_db!(Pool, pool, |p, _d| sqlx::query_as(SQL).fetch_all(p).await?))
}

/// Revokes a user's token at once; their jobs stay.
pub async fn revoke_user(pool: &Pool, name: &str, now: i64) -> Result<(), UserError> {
    if !valid_name(name) {
        return Err(UserError::NotFound(name.into()));
    }
    const SQL: &str = "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL";
    let n = on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL)).bind(now).bind(name).execute(p).await?.rows_affected());
    if n == 0 {
        return Err(missing_or_revoked(pool, name).await);
    }
    Ok(())
}

/// Gives a user a new token (revoked or not): the old one stops working at once. Returns
/// the new token, the only time it is seen, and the old token's hash (so a token file that
/// held it can be rewritten: `token_file::replace_if_held`).
pub async fn rotate_token(pool: &Pool, name: &str) -> Result<(String, String), UserError> {
    if !valid_name(name) {
        return Err(UserError::NotFound(name.into()));
    }
    let token = new_token();
    const OLD: &str = "SELECT token_hash FROM users WHERE name = ?";
    const SQL: &str = "UPDATE users SET token_hash = ?, revoked_at = NULL WHERE name = ?";
    let mut tx = pool.begin_write().await?;
    let old: Option<String> =
        on_db!(Tx, &mut tx, |t, d| sqlx::query_scalar(&d.sql(OLD)).bind(name).fetch_optional(&mut **t).await?);
    let Some(old) = old else {
        tx.rollback().await?;
        return Err(UserError::NotFound(name.into()));
    };
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
        .bind(hash_token(&token))
        .bind(name)
        .execute(&mut **t)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok((token, old))
}

/// Why `name` matched no unrevoked user.
async fn missing_or_revoked(pool: &Pool, name: &str) -> UserError {
    match list_users(pool).await {
        Ok(users) if users.iter().any(|u| u.name == name) => UserError::AlreadyRevoked(name.into()),
        Ok(_) => UserError::NotFound(name.into()),
        Err(e) => e.into(),
    }
}

pub async fn count_users(pool: &Pool) -> Result<i64, QueueError> {
    Ok(on_db!(Pool, pool, |p, _d| sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(p).await?))
}
