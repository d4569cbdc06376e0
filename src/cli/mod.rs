//! The `trainyard` command: its subcommands and what each prints.

mod admin;
mod plot;
mod report;
mod train;
mod users;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "trainyard", version, about = "A training service for CIFAR-10 experiments on a shared lab GPU box")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API and the training workers (what `make run` starts).
    Serve(crate::config::ServeConfig),
    /// Run training workers only, no HTTP, against the given database (the API runs
    /// elsewhere with `serve --no-workers`, or alongside with its own workers).
    Worker(crate::config::ServeConfig),
    /// The CIFAR-10 dataset.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train one experiment in the foreground: a progress bar per epoch, a line per epoch,
    /// metrics.jsonl and checkpoints in --out. Run it again with the same --out to resume.
    Train(train::TrainArgs),
    /// Save a sweep's report (HTML with its figures inline, or Markdown).
    Report(report::ReportArgs),
    /// Manage the users of a shared box and their tokens.
    Users(users::UsersArgs),
    /// Draw a run's curves (loss, training and test accuracy) from its metrics.jsonl.
    Plot(plot::PlotArgs),
    /// Drop the checkpoints (trained weights) of jobs finished before a date, to keep the
    /// database small; metrics, plots and reports stay.
    Gc(admin::GcArgs),
    /// Write a consistent copy of a running SQLite database (for PostgreSQL: pg_dump).
    Backup(admin::BackupArgs),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Download the official CIFAR-10 binary archive, check its MD5 and unpack its files.
    Fetch {
        /// Where the binary files go.
        #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data/cifar-10-batches-bin")]
        data_dir: PathBuf,
        #[arg(long, env = "TRAINYARD_DATA_URL", default_value = crate::fetch::OFFICIAL_URL, hide = true)]
        url: String,
        #[arg(long, env = "TRAINYARD_DATA_MD5", default_value = crate::fetch::OFFICIAL_MD5, hide = true)]
        md5: String,
    },
    /// Write a small learnable stand-in dataset in CIFAR-10's binary format (colour and stripe
    /// patterns plus noise), for trying the service or checking a GPU without the real data.
    Synthetic {
        /// Where the binary files go.
        #[arg(long)]
        data_dir: PathBuf,
        /// Images per training file (there are five) and in the test file.
        #[arg(long, default_value_t = 1000)]
        per_file: usize,
    },
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cfg) => {
                let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                rt.block_on(async {
                    let server = crate::server::start(cfg).await?;
                    if let Some((name, path)) = &server.created_admin {
                        // N.B.: said on stdout as well as in the log, for the person who ran
                        // `make run`; the service itself speaks through tracing.
                        println!("created the first user, {name:?} (an admin); its token is in {}", path.display());
                    }
                    server.run_until_signal().await
                })
            }
            Command::Data { command: DataCommand::Synthetic { data_dir, per_file } } => {
                crate::train::data::write_synthetic(&data_dir, per_file, per_file, 1)?;
                println!(
                    "wrote a synthetic stand-in dataset ({} training, {per_file} test images) to {}",
                    5 * per_file,
                    data_dir.display()
                );
                Ok(())
            }
            Command::Worker(cfg) => {
                let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                rt.block_on(crate::server::run_workers(cfg))
            }
            Command::Data { command: DataCommand::Fetch { data_dir, url, md5 } } => {
                crate::fetch::fetch(&crate::fetch::Source { url, md5 }, &data_dir)?;
                println!("CIFAR-10 is in {}", data_dir.display());
                Ok(())
            }
            Command::Train(args) => train::train(args),
            Command::Plot(args) => plot::plot(args),
            Command::Users(args) => users::users(args),
            Command::Report(args) => report::report(args),
            Command::Gc(args) => admin::gc(args),
            Command::Backup(args) => admin::backup(args),
        }
    }
}
