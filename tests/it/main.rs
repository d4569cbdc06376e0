mod api;
mod cli;
mod engine;
mod fetch;
mod helpers;
mod plots;
mod process;
mod queue;
