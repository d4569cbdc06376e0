//! The database plumbing under the queue: the two backends (`Pool`, `Tx`, `on_db!`), what
//! differs in their SQL (`Dialect`), opening a database (`connect`) and the errors.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// The database: SQLite for one box, PostgreSQL when workers run on several machines.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction on either database.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` once per backend with `$c` bound to the `Pool`'s (or `Tx`'s) inner pool (or
/// transaction) and `$d` to its `Dialect`.
macro_rules! on_db {
    ($kind:ident, $target:expr, |$c:ident, $d:ident| $body:expr) => {
        match $target {
            $crate::queue::$kind::Sqlite($c) => {
                let $d = $crate::queue::Dialect::Sqlite;
                $body
            }
            $crate::queue::$kind::Postgres($c) => {
                let $d = $crate::queue::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_db;

impl Pool {
    /// Begins a transaction that will write (IMMEDIATE on SQLite, so it holds the write lock
    /// from its first read).
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        on_db!(Pool, self, |p, _d| p.close().await)
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        on_db!(Tx, self, |t, _d| t.commit().await)
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        on_db!(Tx, self, |t, _d| t.rollback().await)
    }
}

/// What differs between the two databases' SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql`, written with SQLite's placeholders (`?` in order, or `?N`), in this dialect.
    pub fn sql(self, sql: &str) -> Cow<'_, str> {
        if self == Dialect::Sqlite {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut next = 0;
        let mut quoted = false;
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    out.push('$');
                    if chars.peek().is_some_and(char::is_ascii_digit) {
                        while let Some(d) = chars.next_if(char::is_ascii_digit) {
                            out.push(d);
                        }
                    } else {
                        next += 1;
                        out.push_str(&next.to_string());
                    }
                }
                _ => out.push(c),
            }
        }
        Cow::Owned(out)
    }

    /// A number from a JSON text column, as a float.
    pub(crate) fn json_f64(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Dialect::Postgres => format!("({column}::jsonb ->> '{key}')::float8"),
        }
    }

    /// An integer from a JSON text column.
    pub(crate) fn json_i64(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Dialect::Postgres => format!("({column}::jsonb ->> '{key}')::bigint"),
        }
    }

    /// A string from a JSON text column.
    pub(crate) fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Dialect::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    /// What a `SELECT` that a transaction will update ends with: a row lock on PostgreSQL
    /// (SQLite's IMMEDIATE transaction already holds the database's write lock).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The claim's pick: on PostgreSQL, rows another claim holds are passed over.
    pub(crate) fn skip_locked(self, table: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!(" FOR UPDATE OF {table} SKIP LOCKED"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed; the cause is logged, not shown to clients.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The URL names a database this build cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// The database could not be opened; the message names it and the root cause.
    #[error("{0}")]
    Open(String),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens the database (creating an SQLite file if needed) and applies the migrations: for
/// `serve` and `worker`.
pub async fn connect(url: &str) -> Result<Pool, QueueError> {
    open(url, true).await
}

/// Opens a database that must exist already (the admin commands): a missing SQLite file is
/// an error naming the file it looked for, never a new empty database.
pub async fn open_existing(url: &str) -> Result<Pool, QueueError> {
    open(url, false).await
}

async fn open(url: &str, create: bool) -> Result<Pool, QueueError> {
    let open_error = |e: sqlx::Error| {
        // N.B.: sqlx's message repeats its cause; the innermost error says it once.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        QueueError::Open(format!("cannot open the database {}: {cause}", display_url(url)))
    };
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let opts = PgConnectOptions::from_str(url).map_err(open_error)?;
        // N.B.: one connection first: the pool retries a refused connection until its timeout
        // and then reports only the timeout.
        let first = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await.map_err(open_error)?;
        let _ = sqlx::Connection::close(first).await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        return Ok(Pool::Postgres(pool));
    }
    if !url.starts_with("sqlite:") {
        return Err(QueueError::Unsupported(format!(
            "--database {}: expected sqlite://PATH (one box) or postgres://USER@HOST:PORT/DATABASE (several machines)",
            display_url(url)
        )));
    }
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(open_error)?
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let file = opts.get_filename();
    if !create && !file.exists() {
        let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
        return Err(QueueError::Open(format!(
            "no database at {} ({}, looked for from {cwd}): run this where `trainyard serve` runs, or name the \
             server's database with --database or TRAINYARD_DATABASE",
            file.display(),
            display_url(url)
        )));
    }
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        // N.B.: what the server creates is its owner's alone: `var/` 0700, the database 0600
        // (SQLite gives its -wal and -shm files the database file's mode).
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent);
    }
    if !file.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file);
    }
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(open_error)?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(Pool::Sqlite(pool))
}

/// Writes a consistent copy of a running SQLite database to `file` (`VACUUM INTO`: other
/// connections may go on writing meanwhile). PostgreSQL has its own tool for this.
pub async fn backup(pool: &Pool, file: &std::path::Path) -> Result<(), QueueError> {
    match pool {
        Pool::Sqlite(p) => {
            let path = file.to_str().ok_or_else(|| QueueError::Open(format!("{} is not UTF-8", file.display())))?;
            sqlx::query("VACUUM INTO ?").bind(path).execute(p).await?;
            Ok(())
        }
        Pool::Postgres(_) => Err(QueueError::Unsupported(
            "a PostgreSQL queue is backed up with PostgreSQL's own tool: pg_dump --format=custom \
             --file=FILE 'postgres://USER@HOST:PORT/DB' (restore with pg_restore)"
                .into(),
        )),
    }
}

/// The database URL as logs and messages may show it: any password replaced by `***`.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn postgres_placeholders_are_numbered_and_literals_kept() {
        let sql = "UPDATE t SET a = ?, b = 'what?' WHERE c = ? AND d = ?";
        assert_eq!(Dialect::Postgres.sql(sql), "UPDATE t SET a = $1, b = 'what?' WHERE c = $2 AND d = $3");
        assert_eq!(Dialect::Postgres.sql("(?1 IS NULL OR s = ?1) LIMIT ?12"), "($1 IS NULL OR s = $1) LIMIT $12");
        assert_eq!(Dialect::Sqlite.sql(sql), sql);
    }

    #[test]
    fn passwords_are_not_shown() {
        let url = "postgres://lab:s3cret@db.example:5432/trainyard?sslmode=disable";
        assert_eq!(super::display_url(url), "postgres://lab:***@db.example:5432/trainyard?sslmode=disable");
        assert_eq!(super::display_url("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(super::display_url("sqlite://var/trainyard.db"), "sqlite://var/trainyard.db");
    }
}
