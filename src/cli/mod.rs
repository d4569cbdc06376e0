//! The `trainyard` command: its subcommands and what each prints.

mod train;

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
    /// Train one experiment in the foreground: a progress bar per epoch, a line per epoch,
    /// metrics.jsonl and checkpoints in --out. Run it again with the same --out to resume.
    Train(train::TrainArgs),
    /// A short demonstration run: the linear model and the tutorial's CNN for 2 epochs on
    /// 5,000 images of the data in --data-dir (or on generated data when there is none).
    Demo {
        /// A directory with CIFAR-10's binary files (data_batch_1..5.bin, test_batch.bin).
        #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data/cifar-10-batches-bin")]
        data_dir: PathBuf,
        /// Where the demo's runs are written.
        #[arg(long, default_value = "var/demo")]
        out: PathBuf,
    },
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Train(args) => train::train(args),
            Command::Demo { data_dir, out } => train::demo(&data_dir, &out),
        }
    }
}
