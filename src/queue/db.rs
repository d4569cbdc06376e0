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

    /// Whether text `haystack` holds text `needle` (no wildcards, unlike `LIKE`).
    pub(crate) fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {needle}) > 0"),
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
    /// A stored value no longer reads as its type; `what` names it (the job, the column).
    #[error("{what} in the database does not read: {reason}")]
    Corrupt { what: String, reason: String },
}

/// Reads JSON text the queue stored as `T`; `what` names the value when it does not read.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<T, QueueError> {
    serde_json::from_str(text).map_err(|e| QueueError::Corrupt { what: what(), reason: e.to_string() })
}

impl QueueError {
    /// Whether the database's disk refused a write: SQLite's SQLITE_FULL (13) or
    /// SQLITE_IOERR_WRITE (778: a write past a file-size limit, a failing disk),
    /// PostgreSQL's disk_full (53100).
    pub fn is_disk_full(&self) -> bool {
        let QueueError::Db(sqlx::Error::Database(db)) = self else { return false };
        matches!(db.code().as_deref(), Some("13") | Some("778") | Some("53100"))
            || db.message().contains("database or disk is full")
    }
}

/// Whether a connection given back to the pool may be reused: not if it is still inside a
/// transaction. N.B.: one whose COMMIT and then ROLLBACK failed (SQLITE_FULL on a full disk)
/// came back that way; reused, every later write failed ("begin_with at non-zero
/// transaction depth") until the pool's connection lifetime (30 minutes) ran out. Such a
/// connection is closed instead, and the next one is fresh.
fn outside_transactions<C: sqlx::Connection>(
    conn: &mut C,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    let reuse = !conn.is_in_transaction();
    Box::pin(async move { Ok(reuse) })
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
            .after_release(outside_transactions)
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
    let file = opts.get_filename().to_path_buf();
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
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .after_release(outside_transactions)
        // N.B.: the file exists by now; a connection opened later must never make a new,
        // empty one where it was deleted (`storage::watch_database_file` notices that).
        .connect_with(opts.create_if_missing(false))
        .await
        .map_err(open_error)?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(Pool::Sqlite(pool))
}

/// Writes a consistent copy of a running SQLite database to `file` (`VACUUM INTO`: other
/// connections may go on writing meanwhile), readable by its owner only: it holds every
/// user's jobs and token hashes. PostgreSQL has its own tool for this.
pub async fn backup(pool: &Pool, file: &std::path::Path) -> Result<(), QueueError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match pool {
        Pool::Sqlite(p) => {
            let path = file.to_str().ok_or_else(|| QueueError::Open(format!("{} is not UTF-8", file.display())))?;
            let io = |e: std::io::Error| QueueError::Open(format!("cannot write {}: {e}", file.display()));
            // N.B.: VACUUM INTO writes into an empty file that exists, keeping its mode.
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file).map_err(io)?;
            if let Err(e) = sqlx::query("VACUUM INTO ?").bind(path).execute(p).await {
                let _ = std::fs::remove_file(file);
                return Err(e.into());
            }
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            Ok(())
        }
        Pool::Postgres(_) => Err(QueueError::Unsupported(
            "a PostgreSQL queue is backed up with PostgreSQL's own tool: pg_dump --format=custom \
             --file=FILE 'postgres://USER@HOST:PORT/DB' (restore with pg_restore)"
                .into(),
        )),
    }
}

/// What `compact` did: the SQLite file's size before and after, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
}

/// Gives the space of deleted rows back to the filesystem. SQLite: `VACUUM` rewrites the
/// file (it needs free disk about the file's size, and holds other writers off while it
/// runs: seconds for a class's database), then the write-ahead log is emptied.
/// PostgreSQL: `VACUUM` makes the space reusable by the database (its files do not shrink;
/// `VACUUM FULL` would, with a lock); `None` there.
pub async fn compact(pool: &Pool) -> Result<Option<Compacted>, QueueError> {
    match pool {
        Pool::Sqlite(p) => {
            let size = || async {
                let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(p).await?;
                let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(p).await?;
                Ok::<u64, sqlx::Error>((pages * page).max(0) as u64)
            };
            let before = size().await?;
            sqlx::query("VACUUM").execute(p).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await?;
            Ok(Some(Compacted { before, after: size().await? }))
        }
        Pool::Postgres(p) => {
            for table in ["checkpoints", "metrics", "events", "sweep_jobs", "jobs"] {
                sqlx::query(&format!("VACUUM {table}")).execute(p).await?;
            }
            Ok(None)
        }
    }
}

/// The file of an SQLite URL (`sqlite://var/trainyard.db` → `var/trainyard.db`); `None` for
/// PostgreSQL or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    let file = opts.get_filename();
    (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:")).then(|| file.to_path_buf())
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
