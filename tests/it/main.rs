mod cli;
mod engine;
