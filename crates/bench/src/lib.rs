//! `riftkv bench`: a YCSB-style load generator (CONTRACT §4). The same engine drives RiftKV
//! and, for side-by-side runs, etcd and Redis.
//!
//! - [`generator`]: which record an operation touches (uniform, zipfian, scrambled zipfian,
//!   latest) and the insert-key counter;
//! - [`workload`]: YCSB's core workloads A–F, their operation mixes;
//! - [`target`]: the systems under test behind one trait;
//! - [`runner`]: the load phase, then the measured run, closed or open loop;
//! - [`report`]: histograms, the table, the JSON document, `results.json` and `latency.png`.
//!
//! [`run`] ties them together for the `riftkv bench` subcommand; see `docs/bench.md`.

pub mod generator;
pub mod report;
pub mod runner;
pub mod target;
pub mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use generator::Distribution;
use report::{ReportError, RunInfo, Summary};
use runner::{Bound, Pace, RunConfig};
use target::{ErrorKind, TargetError, TargetOptions, TargetSpec};
use workload::Workload;

/// Everything `riftkv bench` was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: TargetSpec,
    pub workload: Workload,
    pub records: u64,
    pub value_size: usize,
    /// `None`: the workload's own (latest for D, zipfian otherwise).
    pub distribution: Option<Distribution>,
    pub concurrency: usize,
    pub bound: Bound,
    /// Operations per second: open loop. `None`: closed loop.
    pub target_rate: Option<f64>,
    pub load: bool,
    pub options: TargetOptions,
    pub out: Option<PathBuf>,
    pub json: bool,
    pub seed: Option<u64>,
}

/// Why a run could not be made (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Exit code of a run that completed with more than 1% of its operations failed.
pub const EXIT_ERRORS: u8 = 1;
/// Exit code of usage and connection errors.
pub const EXIT_USAGE: u8 = 2;

/// Runs a whole benchmark: check the target, load, run, report. Answers the summary.
pub async fn run(cfg: &Config) -> Result<Summary, BenchError> {
    if cfg.concurrency == 0 {
        return Err(BenchError::Usage("--concurrency must be at least 1".into()));
    }
    if let Some(rate) = cfg.target_rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(BenchError::Usage("--target-rate must be above 0".into()));
    }
    if cfg.records == 0 {
        return Err(BenchError::Usage("--records must be at least 1".into()));
    }
    let options = TargetOptions {
        connections: cfg.concurrency,
        ..cfg.options.clone()
    };
    let target = target::connect(&cfg.target, &options)?;
    target
        .check()
        .await
        .map_err(|e| unreachable_error(cfg, e))?;
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let load = if cfg.load {
        target
            .prepare_load()
            .await
            .map_err(|e| unreachable_error(cfg, e))?;
        let progress = !cfg.json && std::io::stderr().is_terminal();
        Some(
            runner::load(
                target.clone(),
                cfg.records,
                cfg.value_size,
                cfg.concurrency,
                seed,
                progress,
            )
            .await,
        )
    } else {
        None
    };
    let distribution = cfg
        .distribution
        .unwrap_or_else(|| cfg.workload.default_distribution());
    let run = RunConfig {
        workload: cfg.workload,
        distribution,
        records: cfg.records,
        value_size: cfg.value_size,
        concurrency: cfg.concurrency,
        bound: cfg.bound,
        pace: cfg.target_rate.map_or(Pace::Closed, Pace::Open),
        seed,
        grace: runner::OPEN_LOOP_GRACE,
    };
    let (rec, elapsed) = runner::run(target, run).await;
    let info = RunInfo {
        target: cfg.target.to_string(),
        workload: cfg.workload.as_str().to_string(),
        distribution: distribution.as_str().to_string(),
        mode: if cfg.target_rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_string(),
        concurrency: cfg.concurrency,
        target_rate: cfg.target_rate,
        records: cfg.records,
        value_size: cfg.value_size,
    };
    let kinds: Vec<_> = cfg.workload.mix().into_iter().map(|(k, _)| k).collect();
    Ok(Summary::new(info, &rec, &kinds, elapsed, load))
}

fn unreachable_error(cfg: &Config, e: target::OpError) -> BenchError {
    match e.kind {
        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Protocol => {
            BenchError::Target(TargetError::Unreachable {
                target: cfg.target.to_string(),
                reason: e.to_string(),
            })
        }
        _ => BenchError::Usage(format!("{} refused the benchmark: {e}", cfg.target)),
    }
}

/// `riftkv bench`: runs, prints the table (or the JSON document), writes `--out`; answers
/// the exit code: 0 completed, 1 more than 1% errors, 2 usage or connection errors.
pub fn main(cfg: &Config) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("riftkv-bench")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&BenchError::Runtime(e)),
    };
    let summary = match runtime.block_on(run(cfg)) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    if cfg.json {
        match summary.to_json() {
            Ok(j) => println!("{j}"),
            Err(e) => return fail(&e.into()),
        }
    } else {
        print!("{}", summary.table());
    }
    if let Some(dir) = &cfg.out
        && let Err(e) = summary.write_dir(dir)
    {
        return fail(&e.into());
    }
    if summary.too_many_errors() {
        eprintln!(
            "riftkv bench: {} of {} operations failed (more than 1%)",
            summary.errors + summary.load.as_ref().map_or(0, |l| l.errors),
            summary.operations + summary.load.as_ref().map_or(0, |l| l.records)
        );
        EXIT_ERRORS
    } else {
        0
    }
}

fn fail(e: &BenchError) -> u8 {
    eprintln!("riftkv bench: {e}");
    EXIT_USAGE
}
