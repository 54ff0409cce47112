//! The `riftkv` binary: every subcommand lives in `riftkv::cli`.

use clap::Parser;
use std::process::ExitCode;

/// A node allocates and frees many short-lived buffers per request (frames, objects, headers)
/// across threads; glibc's malloc spent about 12% of a node's samples under YCSB-A in
/// allocation and consolidation. mimalloc's per-thread free lists cost less (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    riftkv::cli::run(riftkv::cli::Cli::parse())
}
