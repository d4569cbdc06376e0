mod api;
mod cli;
mod engine;
mod helpers;
mod plots;
mod process;
