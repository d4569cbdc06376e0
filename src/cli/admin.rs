//! `trainyard gc` and `trainyard backup`: keeping a box's database small and safe.

use crate::queue;
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Drop the checkpoints of jobs that finished before this day (YYYY-MM-DD, UTC) or this
    /// many days ago (e.g. 30d). Their metrics, plots and reports stay; their weights can no
    /// longer be downloaded.
    #[arg(long)]
    before: String,
    /// Drop those jobs whole instead: their rows, metrics and checkpoints (a sweep only with
    /// all of its jobs, so no report loses a row). They are gone from the API.
    #[arg(long)]
    jobs: bool,
    /// The job database, as for `trainyard serve`.
    #[arg(long, env = "TRAINYARD_DATABASE", default_value = "sqlite://var/trainyard.db")]
    database: String,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Where the copy goes (must not exist yet).
    file: PathBuf,
    /// The job database, as for `trainyard serve`.
    #[arg(long, env = "TRAINYARD_DATABASE", default_value = "sqlite://var/trainyard.db")]
    database: String,
}

/// `--before` as milliseconds since the epoch.
fn cutoff(before: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(days) = before.strip_suffix('d') {
        let days: i64 = days.parse().with_context(|| format!("--before {before}: expected YYYY-MM-DD or Nd"))?;
        return Ok(now - days * 86_400_000);
    }
    let day = chrono::NaiveDate::parse_from_str(before, "%Y-%m-%d")
        .with_context(|| format!("--before {before}: expected YYYY-MM-DD or Nd"))?;
    Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
}

pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    let before = cutoff(&args.before, queue::now_ms())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let message = rt.block_on(async {
        let pool = queue::open_existing(&args.database).await?;
        eprintln!("using the database {}", queue::display_url(&args.database));
        let message = if args.jobs {
            let d = queue::checkpoints::drop_jobs_before(&pool, before).await?;
            format!(
                "dropped {} jobs and {} sweeps finished before {}, with their metrics and checkpoints: {:.1} MB of \
                 checkpoints freed",
                d.jobs,
                d.sweeps,
                args.before,
                d.checkpoint_bytes as f64 / 1e6
            )
        } else {
            let (n, bytes) = queue::checkpoints::drop_checkpoints_before(&pool, before).await?;
            format!(
                "dropped {n} checkpoints of jobs finished before {}: {:.1} MB of checkpoints",
                args.before,
                bytes as f64 / 1e6
            )
        };
        let shrunk = match queue::compact(&pool).await? {
            Some(queue::Compacted { before, after }) => format!(
                "; the database file went from {:.1} MB to {:.1} MB ({:.1} MB given back to the disk)",
                before as f64 / 1e6,
                after as f64 / 1e6,
                before.saturating_sub(after) as f64 / 1e6
            ),
            None => "; PostgreSQL reuses the space (VACUUM ran; its files do not shrink)".into(),
        };
        pool.close().await;
        anyhow::Ok(format!("{message}{shrunk}"))
    })?;
    println!("{message}");
    Ok(())
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.file.exists() {
        anyhow::bail!("{} exists already; name a new file", args.file.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let pool = queue::open_existing(&args.database).await?;
        eprintln!("using the database {}", queue::display_url(&args.database));
        queue::backup(&pool, &args.file).await?;
        pool.close().await;
        anyhow::Ok(())
    })?;
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    println!("wrote a consistent copy of the database to {} ({:.1} MB)", args.file.display(), size as f64 / 1e6);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn before_takes_a_day_or_a_number_of_days() {
        assert_eq!(super::cutoff("2026-11-27", 0).unwrap(), 1_795_737_600_000);
        assert_eq!(super::cutoff("30d", 31 * 86_400_000).unwrap(), 86_400_000);
        assert!(super::cutoff("last week", 0).unwrap_err().to_string().contains("YYYY-MM-DD or Nd"));
    }
}
