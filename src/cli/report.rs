//! `trainyard report SWEEP_ID --out report.html`: a sweep's report, saved from the database.

use crate::queue;
use anyhow::{bail, Context};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The sweep's id (from POST /sweeps or GET /sweeps), or a unique prefix of it of at
    /// least 8 characters (the page shows the first 8).
    sweep_id: String,
    /// Where to write it: .html (self-contained) or .md.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// The job database, as for `trainyard serve`.
    #[arg(long, env = "TRAINYARD_DATABASE", default_value = "sqlite://var/trainyard.db")]
    database: String,
}

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let md = match args.out.extension().and_then(|e| e.to_str()) {
        Some("html") => false,
        Some("md") => true,
        _ => bail!("--out must end in .html or .md, got {}", args.out.display()),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let r = rt.block_on(async {
        let pool = queue::open_existing(&args.database).await?;
        eprintln!("using the database {}", queue::display_url(&args.database));
        let id = resolve(&pool, &args.sweep_id, &args.database).await?;
        let Some(sweep) = queue::sweeps::get_sweep(&pool, &id).await? else {
            bail!("no sweep with id {} in {}", args.sweep_id, queue::display_url(&args.database));
        };
        let r = crate::api::sweeps::build_report(&pool, &sweep).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        pool.close().await;
        anyhow::Ok(r)
    })?;
    let text = if md { crate::report::markdown(&r) } else { crate::report::html(&r) };
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// A whole id, or the one sweep a prefix of at least 8 characters names.
async fn resolve(pool: &queue::Pool, given: &str, database: &str) -> anyhow::Result<String> {
    let given = given.trim();
    let where_ = queue::display_url(database);
    if given.len() < 8 || !given.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("{given:?} is not a sweep id: give the id (GET /sweeps lists them) or its first 8 or more characters");
    }
    let ids = queue::sweeps::ids_with_prefix(pool, given).await?;
    match ids.as_slice() {
        [id] => Ok(id.clone()),
        [] => bail!("no sweep with an id starting {given} in {where_}"),
        _ => bail!("more than one sweep's id starts {given} in {where_}; give more of it"),
    }
}
