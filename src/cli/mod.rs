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
    /// The datasets: fetch a built-in one, import a lab's own images, list them.
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
    /// Download a built-in dataset's published files (CIFAR-10 by default), check their
    /// MD5s and put them in its folder of the data directory.
    Fetch {
        /// cifar10, cifar100 (also serves cifar100-coarse), mnist or fashion-mnist.
        #[arg(default_value = "cifar10")]
        dataset: String,
        /// The dataset store.
        #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data")]
        data_dir: PathBuf,
        #[arg(long, env = "TRAINYARD_DATA_URL", default_value = crate::fetch::OFFICIAL_URL, hide = true)]
        url: String,
        #[arg(long, env = "TRAINYARD_DATA_MD5", default_value = crate::fetch::OFFICIAL_MD5, hide = true)]
        md5: String,
        /// Fetch from this mirror of the datasets' files (MIRROR/<dataset folder>/<file name>) instead.
        #[arg(long, env = "TRAINYARD_DATA_MIRROR")]
        mirror: Option<String>,
    },
    /// Import a folder of labelled images (DIR/train/CLASS/*.png|jpg and DIR/test/CLASS/*,
    /// or DIR/CLASS/* split by --test-fraction) as a dataset jobs can name.
    Import {
        /// The dataset's name in specs: 1 to 40 of a-z, 0-9, - and _.
        name: String,
        /// The folder of images.
        dir: PathBuf,
        /// The dataset store.
        #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data")]
        data_dir: PathBuf,
        /// Resize every image to HxW pixels (without it, all images must have one size).
        #[arg(long, value_parser = crate::dataset::import::parse_size)]
        size: Option<(u32, u32)>,
        /// Without train/ and test/ folders: the share of each class held out for testing.
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        /// Seeds the held-out choice, so the same folder splits the same way.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// What people call it (default: its name).
        #[arg(long)]
        title: Option<String>,
        /// Replace a dataset of this name (its queued jobs then train on the new one).
        #[arg(long)]
        replace: bool,
        /// Leave out files that do not decode (each is listed), instead of importing nothing.
        #[arg(long)]
        skip_bad: bool,
    },
    /// List the datasets of the data directory: shape, classes, splits, and whether each is there.
    List {
        /// The dataset store.
        #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data")]
        data_dir: PathBuf,
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
            Command::Data { command: DataCommand::Fetch { dataset, data_dir, url, md5, mirror } } => {
                let Some(data) = crate::dataset::named(&dataset).filter(|d| d.download.is_some()) else {
                    let can: Vec<&str> =
                        crate::dataset::BUILTIN.iter().filter(|d| d.download.is_some()).map(|d| d.name).collect();
                    anyhow::bail!("{dataset:?} cannot be fetched; these can: {}", can.join(", "));
                };
                let dir = crate::fetch::fetch_dataset(data, &data_dir, &crate::fetch::Source { url, md5, mirror })?;
                println!("{} is in {}", data.title, dir.display());
                Ok(())
            }
            Command::Data {
                command:
                    DataCommand::Import { name, dir, data_dir, size, test_fraction, seed, title, replace, skip_bad },
            } => {
                let opts = crate::dataset::import::ImportOptions {
                    name,
                    source: dir,
                    data_dir,
                    size,
                    test_fraction,
                    seed,
                    replace,
                    skip_bad,
                    title,
                };
                let imported = crate::dataset::import::import(&opts).map_err(|why| anyhow::anyhow!("{why}"))?;
                println!("{}", imported.summary());
                Ok(())
            }
            Command::Data { command: DataCommand::List { data_dir } } => {
                for (dir, why) in crate::dataset::scan(&data_dir) {
                    eprintln!("warning: {} is not a dataset: {why}", dir.display());
                }
                for d in crate::dataset::all() {
                    let state = match crate::dataset::check_present(d, &data_dir) {
                        Ok(()) => format!("present in {}", d.locate(&data_dir).display()),
                        Err(e) if e.state() == "missing" && d.download.is_some() => {
                            format!("missing (`trainyard data fetch {}` gets it)", d.name)
                        }
                        Err(e) => format!("{}: {e}", e.state()),
                    };
                    println!(
                        "{:<16} {:<26} {:>8} {:>3} classes {:>6} train {:>6} test  {state}",
                        d.name,
                        d.title,
                        d.shape_text(),
                        d.num_classes(),
                        d.train_images,
                        d.test_images
                    );
                }
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
