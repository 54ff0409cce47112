//! The `riftkv` binary: every subcommand lives in `riftkv::cli`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    riftkv::cli::run(riftkv::cli::Cli::parse())
}
