//! The health of the process's database, as the process itself sees it: a write that failed
//! (a full disk, a PostgreSQL restart), and the SQLite file vanishing or being replaced under
//! the running server. What is wrong is kept here, not in the database (which is what is
//! wrong), so `/readyz` can say it, workers hold their claims while it lasts (no job is
//! charged for the box's own outage), and the log says it once and then once a minute
//! instead of twice a second per worker.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a lasting trouble is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Trouble {
    since: Instant,
    message: String,
}

#[derive(Debug, Default)]
struct State {
    trouble: Option<Trouble>,
    /// When the last line about the database's trouble was logged, and the failures since.
    /// N.B.: kept across troubles: a disk that is nearly full lets small writes through
    /// between failing big ones, and each flap must not log anew.
    logged_at: Option<Instant>,
    unlogged: u64,
    /// When the last trouble ended.
    ended_at: Option<Instant>,
    /// The database file is gone or replaced: nothing written now would last. Only a
    /// restart ends it.
    lost: Option<String>,
}

#[derive(Debug, Default)]
pub struct Storage {
    state: Mutex<State>,
}

impl Storage {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A database call failed while `doing` something. Logged at once the first time, then
    /// at most every `LOG_EVERY` with how many failed meanwhile.
    pub fn failed(&self, doing: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let message = format!("the database does not answer or take writes ({doing}: {error})");
        let mut s = self.state();
        let since = s.trouble.as_ref().map_or(now, |t| t.since);
        let new = s.trouble.is_none();
        s.trouble = Some(Trouble { since, message });
        let quiet = s.logged_at.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if new && quiet {
            tracing::error!(error = %error, doing, "the database failed; workers hold their claims until it recovers (logged again every minute while it lasts)");
            s.unlogged = 0;
            s.logged_at = Some(now);
        } else if quiet {
            tracing::error!(error = %error, doing, failures = s.unlogged + 1, for_s = now.duration_since(since).as_secs(),
                "the database is still failing");
            s.unlogged = 0;
            s.logged_at = Some(now);
        } else {
            s.unlogged += 1;
        }
    }

    /// Notes how a database call made while `doing` something went: a success ends a
    /// trouble (`recovered`), a failure is one (`failed`).
    pub fn outcome<T, E: std::fmt::Display>(&self, doing: &str, result: &Result<T, E>) {
        match result {
            Ok(_) => self.recovered(),
            Err(e) => self.failed(doing, e),
        }
    }

    /// A write went through: a trouble, if any, is over.
    pub fn recovered(&self) {
        let mut s = self.state();
        if let Some(t) = s.trouble.take() {
            let now = Instant::now();
            // N.B.: said once a minute at most too (a nearly full disk flaps).
            if s.ended_at.is_none_or(|e| now.duration_since(e) >= LOG_EVERY) {
                tracing::info!(after_s = t.since.elapsed().as_secs_f64(), "the database takes writes again");
            }
            s.ended_at = Some(now);
        }
    }

    /// The database file is gone or replaced (`why` says which): from now on the process
    /// refuses writes and says so, until it is restarted.
    pub fn lost(&self, why: String) {
        let mut s = self.state();
        if s.lost.is_none() {
            tracing::error!(problem = %why, "the database file is gone; refusing writes until restarted");
            s.lost = Some(why);
        }
    }

    /// Why the box cannot write now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let s = self.state();
        s.lost.clone().or_else(|| s.trouble.as_ref().map(|t| t.message.clone()))
    }

    /// Whether the database file is gone or replaced.
    pub fn is_lost(&self) -> Option<String> {
        self.state().lost.clone()
    }

    /// True in trouble, or less than `quiet` after a trouble ended: a lease that expired
    /// meanwhile says nothing about its worker (its heartbeats could not land either), so
    /// nobody is charged for it until every live worker had `quiet` to renew.
    pub fn unsettled(&self, quiet: Duration) -> bool {
        let s = self.state();
        s.trouble.is_some() || s.lost.is_some() || s.ended_at.is_some_and(|t| t.elapsed() < quiet)
    }
}

/// The identity of a file, to notice it being deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(path: &std::path::Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }
}

/// Where this machine's trainyard remembers the SQLite databases it created, so that a
/// database deleted with its directory (`rm -rf var`) is noticed at the next start instead
/// of silently replaced by an empty one: `--state-dir`, else `$XDG_STATE_HOME/trainyard`,
/// else `~/.local/state/trainyard`.
pub fn state_dir(configured: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    if let Some(d) = configured {
        return Some(d.to_path_buf());
    }
    let xdg = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    let home =
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| std::path::Path::new(&h).join(".local/state"));
    xdg.or(home).map(|d| d.join("trainyard"))
}

const KNOWN: &str = "databases";

/// A SQLite URL's file and its absolute path, with the state directory's record of known
/// databases and whether it lists that path; `None` for PostgreSQL or no state directory.
struct Known {
    file: std::path::PathBuf,
    abs: std::path::PathBuf,
    state: std::path::PathBuf,
    listed: bool,
}

impl Known {
    fn of(url: &str, state: Option<&std::path::Path>) -> Option<Known> {
        let (file, state) = (crate::queue::sqlite_file(url)?, state_dir(state)?);
        let abs = absolute(&file);
        let listed = std::fs::read_to_string(state.join(KNOWN))
            .unwrap_or_default()
            .lines()
            .any(|l| std::path::Path::new(l) == abs);
        Some(Known { file, abs, state, listed })
    }
}

/// The absolute path of `file`, whether or not it exists.
fn absolute(file: &std::path::Path) -> std::path::PathBuf {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match (abs.parent().and_then(|p| p.canonicalize().ok()), abs.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => abs,
    }
}

/// Before a server or worker opens `url`: a missing SQLite file that this machine's
/// trainyard created before is an error (it was deleted or moved; a new empty one would
/// lose every acknowledged job without a word), unless `init` says to create a new one.
pub fn check_database_file(url: &str, init: bool, state: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(Known { file, state, listed, .. }) = Known::of(url, state) else { return Ok(()) };
    if listed && !init && !file.exists() {
        anyhow::bail!(
            "the database {} is missing, but trainyard created it on this machine before (as {} records): it was \
             deleted or moved, with every job in it. Put it back (restore a `trainyard backup` copy there), or start \
             with --init (TRAINYARD_INIT=1) to create a new, empty database",
            file.display(),
            state.join(KNOWN).display()
        );
    }
    Ok(())
}

/// After opening `url`: remembers its SQLite file as one this machine's trainyard uses.
pub fn remember_database_file(url: &str, state: Option<&std::path::Path>) {
    let Some(Known { abs, state, listed: false, .. }) = Known::of(url, state) else { return };
    let path = state.join(KNOWN);
    let written = std::fs::create_dir_all(&state).and_then(|()| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        writeln!(f, "{}", abs.display())
    });
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the database's path");
    }
}

/// Watches the SQLite file under a running process: once it is deleted or replaced (another
/// file at its path), the hub's storage is lost. Returns when `stop` resolves.
pub async fn watch_database_file(
    file: std::path::PathBuf,
    hub: std::sync::Arc<crate::hub::Hub>,
    stop: impl std::future::Future<Output = ()>,
) {
    let Some(first) = FileId::of(&file) else { return };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stop => return,
        }
        let why = match FileId::of(&file) {
            Some(id) if id == first => continue,
            Some(_) => "replaced by another file",
            None => "deleted",
        };
        hub.storage.lost(format!(
            "the database file {} was {why} under the running server: writes would be lost, so none are taken; \
             restore the file and restart trainyard",
            file.display()
        ));
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trouble_holds_until_a_write_succeeds_and_then_settles_after_the_quiet_period() {
        let s = Storage::default();
        assert!(s.problem().is_none() && !s.unsettled(Duration::from_secs(1)));
        s.failed("claiming", &"database or disk is full");
        s.failed("claiming", &"database or disk is full");
        assert!(s.problem().unwrap().contains("database or disk is full"));
        assert!(s.unsettled(Duration::ZERO));
        s.recovered();
        assert!(s.problem().is_none());
        assert!(s.unsettled(Duration::from_secs(60)), "a lease may have expired in the outage");
        assert!(!s.unsettled(Duration::ZERO));
        s.lost("the database file var/x.db was deleted".into());
        s.recovered();
        assert!(s.problem().unwrap().contains("deleted"), "only a restart ends a lost database");
    }
}
