//! The database a test runs on. SQLite (a file in the test's directory) unless
//! `TRAINYARD_TEST_POSTGRES` names a PostgreSQL server (postgres://USER@HOST:PORT): then each
//! test gets a fresh database of its own there, dropped when the test ends. `make test` runs
//! the service tests both ways.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const POSTGRES_ENV: &str = "TRAINYARD_TEST_POSTGRES";

pub struct TestDb {
    pub url: String,
    /// (server URL, database name) to drop at the end, on PostgreSQL.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A new, empty database for one test (`dir` holds it on SQLite).
    pub fn new(dir: &Path) -> TestDb {
        let Some(server) = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty()) else {
            return TestDb { url: format!("sqlite://{}", dir.join("trainyard.db").display()), postgres: None };
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("trainyard_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let server = server.trim_end_matches('/').to_string();
        on_server(&server, &format!("CREATE DATABASE {name}"));
        TestDb { url: format!("{server}/{name}"), postgres: Some((server, name)) }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// PostgreSQL: whether any client connection to this database is encrypted now.
    pub fn uses_tls(&self) -> bool {
        let (server, name) = self.postgres.as_ref().expect("only PostgreSQL connections use TLS");
        let sql = format!(
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
             WHERE a.datname = '{name}' AND s.ssl"
        );
        on_server(server, &sql).expect("a count") > 0
    }

    /// PostgreSQL: refuses (`true`) or allows again new connections to this database; locked
    /// out, every connection is also ended, as a long outage or a lock-out by an admin would.
    pub fn lock_out(&self, locked: bool) {
        let (server, name) = self.postgres.as_ref().expect("only PostgreSQL can be locked out");
        on_server(server, &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {}", !locked));
        if locked {
            self.cut_connections();
        }
    }

    /// PostgreSQL: ends every client connection to this database, as a restart or a network
    /// cut would. Returns how many there were.
    pub fn cut_connections(&self) -> i64 {
        let (server, name) = self.postgres.as_ref().expect("only PostgreSQL connections can be cut");
        let sql = format!(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        );
        on_server(server, &sql).expect("a count")
    }
}

impl TestDb {
    /// Runs one statement on this database behind the service's back (to damage a stored
    /// value, say), whichever database it is.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            on_server(server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs one statement in the server's `postgres` database, on a thread of its own (callers
/// may be inside an async runtime, or dropping during a panic); the first column of its first
/// row, if it returns an integer.
fn on_server(server: &str, sql: &str) -> Option<i64> {
    let (server, sql) = (server.to_string(), sql.to_string());
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.map_err(|e| {
                format!(
                    "the service tests run on PostgreSQL too ({POSTGRES_ENV}={server}), and none answers there: {e}. \
                     Start PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication), or point \
                     TEST_POSTGRES at one: make test TEST_POSTGRES=postgres://USER@HOST:PORT"
                )
            })?;
            let row = sqlx::query(&sql).fetch_optional(&mut conn).await.map_err(|e| format!("{sql}: {e}"))?;
            conn.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(row.and_then(|r| sqlx::Row::try_get::<i64, _>(&r, 0).ok()))
        })
    })
    .join()
    .expect("the database thread panicked");
    match result {
        Ok(value) => value,
        Err(e) if !std::thread::panicking() => panic!("{e}"),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}
