//! `riftkv bench`: parses the flags (CONTRACT §4) and hands over to `riftkv-bench`.

use clap::{Args, ValueEnum};
use riftkv_bench::generator::Distribution;
use riftkv_bench::runner::Bound;
use riftkv_bench::target::{TargetOptions, TargetSpec};
use riftkv_bench::workload::Workload;
use riftkv_bench::{Config, EXIT_USAGE};
use riftkv_client::Options;
use std::path::PathBuf;
use std::time::Duration;

use super::client::QuorumOpts;

/// YCSB core workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// 50% read, 50% update
    A,
    /// 95% read, 5% update
    B,
    /// 100% read
    C,
    /// 95% read, 5% insert; reads favour the newest keys
    D,
    /// 95% scan (1..100 keys, through the bucket listing), 5% insert
    E,
    /// 50% read, 50% read-modify-write (a read, then a write with its context)
    F,
}

/// Which keys operations touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistributionArg {
    /// Scrambled zipfian (0.99): a few hot keys, scattered over the key space
    Zipfian,
    /// Every key alike
    Uniform,
    /// Zipfian over recency: the newest keys are the hottest
    Latest,
}

/// `riftkv bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// System under test: riftkv://HOST:PORT,... (nodes' REST APIs, used in turn),
    /// etcd://HOST:PORT,... (v3 JSON gateways) or redis://HOST:PORT
    #[arg(long, default_value = "riftkv://127.0.0.1:8701", value_name = "URL")]
    pub target: String,
    /// YCSB core workload
    #[arg(long, value_enum, default_value = "a")]
    pub workload: WorkloadArg,
    /// Records in the data set: keys user000000000000 .. (records-1)
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Size of every written value, in bytes
    #[arg(long, default_value_t = 1000, value_name = "BYTES")]
    pub value_size: usize,
    /// Key distribution [default: latest for workload d, zipfian otherwise]
    #[arg(long, value_enum)]
    pub distribution: Option<DistributionArg>,
    /// Concurrent clients (closed loop), or the most operations in flight (open loop)
    #[arg(long, default_value_t = 16, value_name = "C",
          value_parser = clap::value_parser!(u64).range(1..10_001))]
    pub concurrency: u64,
    /// Length of the measured run, in seconds [default: 30]
    #[arg(long, value_name = "SECS", conflicts_with = "operations",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// Run this many operations instead of a duration
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub operations: Option<u64>,
    /// Open loop at this many operations per second: latency counts from each operation's
    /// intended start, so queueing behind a slow answer is measured
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub target_rate: Option<f64>,
    /// Insert the records first (with a progress bar); for riftkv this also sets the
    /// bucket's conflict mode to lww, as YCSB's updates are blind overwrites
    #[arg(long)]
    pub load: bool,
    /// RiftKV bucket of the data set
    #[arg(long, default_value = "bench", value_name = "NAME")]
    pub bucket: String,
    #[command(flatten)]
    pub quorum: QuorumOpts,
    /// Bearer token sent to RiftKV's API
    #[arg(
        long,
        env = "RIFTKV_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Also write results.json and latency.png (latency and throughput over time) here
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the results as one JSON document instead of a table
    #[arg(long)]
    pub json: bool,
    /// Seed of the random choices (keys, operations, values) [default: random]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl BenchArgs {
    /// The run these flags ask for; `Err` is a usage error.
    pub fn config(&self) -> Result<Config, String> {
        let target = TargetSpec::parse(&self.target).map_err(|e| e.to_string())?;
        if let Some(rate) = self.target_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("--target-rate must be above 0, got {rate}"));
        }
        let bound = match (self.operations, self.duration) {
            (Some(n), _) => Bound::Operations(n),
            (None, secs) => Bound::Duration(Duration::from_secs(secs.unwrap_or(30))),
        };
        let q = &self.quorum;
        Ok(Config {
            target,
            workload: match self.workload {
                WorkloadArg::A => Workload::A,
                WorkloadArg::B => Workload::B,
                WorkloadArg::C => Workload::C,
                WorkloadArg::D => Workload::D,
                WorkloadArg::E => Workload::E,
                WorkloadArg::F => Workload::F,
            },
            records: self.records,
            value_size: self.value_size,
            distribution: self.distribution.map(|d| match d {
                DistributionArg::Zipfian => Distribution::Zipfian,
                DistributionArg::Uniform => Distribution::Uniform,
                DistributionArg::Latest => Distribution::Latest,
            }),
            concurrency: usize::try_from(self.concurrency).unwrap_or(usize::MAX),
            bound,
            target_rate: self.target_rate,
            load: self.load,
            options: TargetOptions {
                bucket: self.bucket.clone(),
                consistency: Options {
                    r: q.r,
                    w: q.w,
                    dw: q.dw,
                    pr: q.pr,
                    pw: q.pw,
                    ..Options::default()
                },
                token: self.token.clone(),
                connections: 0,
            },
            out: self.out.clone(),
            json: self.json,
            seed: self.seed,
        })
    }
}

/// Runs `riftkv bench`; answers the exit code.
pub fn run(args: &BenchArgs) -> u8 {
    match args.config() {
        Ok(cfg) => riftkv_bench::main(&cfg),
        Err(e) => {
            eprintln!("riftkv bench: {e}");
            EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["riftkv", "bench"], args].concat())?;
        match cli.command {
            Command::Bench(a) => Ok(*a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_of_the_contract_parse() {
        let a = parse(&[
            "--target",
            "riftkv://127.0.0.1:8701,127.0.0.1:8702",
            "--workload",
            "f",
            "--records",
            "500",
            "--value-size",
            "100",
            "--distribution",
            "uniform",
            "--concurrency",
            "8",
            "--operations",
            "1000",
            "--target-rate",
            "250",
            "--load",
            "--bucket",
            "b",
            "--r",
            "quorum",
            "--w",
            "2",
            "--dw",
            "0",
            "--pr",
            "1",
            "--pw",
            "all",
            "--token",
            "t",
            "--out",
            "/tmp/x",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = a.config().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.workload, Workload::F);
        assert_eq!(cfg.bound, Bound::Operations(1000));
        assert_eq!(cfg.target_rate, Some(250.0));
        assert_eq!(cfg.distribution, Some(Distribution::Uniform));
        assert_eq!(
            cfg.options.consistency.w,
            Some(riftkv_client::Quorum::Count(2))
        );
        assert!(cfg.load && cfg.json);
        let d = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        let cfg = d.config().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.bound, Bound::Duration(Duration::from_secs(30)));
        assert_eq!(cfg.target.to_string(), "riftkv://127.0.0.1:8701");
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["--duration", "5", "--operations", "5"]).is_err());
        assert!(parse(&["--workload", "g"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        let bad_target = parse(&["--target", "http://x:1"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(bad_target.config().is_err());
        let bad_rate = parse(&["--target-rate", "0"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(bad_rate.config().is_err());
    }
}
