//! trainyard: an HTTP training service for a shared lab GPU box.
//!
//! A job flows: validated spec (`spec`) → trained on a device (`train`) → epoch metrics.
//!
//! - `spec`: the experiment spec — parse, defaults, validation.
//! - `train`: blocking training code: data, models, augmentation, SGD, the loop, checkpoints.
//! - `device`: naming and checking torch devices.
//! - `cli`: the `trainyard` command's subcommands.

pub mod cli;
pub mod device;
pub mod spec;
pub mod train;
