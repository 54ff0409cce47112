//! The `riftkv` command line: `server`, `dev`, the client subcommands and `bench`.
//!
//! Exit codes: 0 success; 1 when the server answers "no" (404, 412, 503 and every other 4xx/5xx);
//! 2 for usage errors, bad configuration, and failures to reach or understand the server.

pub mod admin;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod dev;
pub mod output;
pub mod types;
pub mod users;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use riftkv_server::config::{LogFormat, ServerArgs, ServerConfig};

/// RiftKV: a Dynamo-style, sloppy-quorum key-value database.
#[derive(Parser, Debug)]
#[command(name = "riftkv", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a RiftKV node
    Server(Box<ServerArgs>),
    /// Start a local cluster of separate server processes on 127.0.0.1
    Dev(dev::DevArgs),
    /// Store a value: VALUE, or stdin when VALUE is '-' or absent
    Put(client::PutArgs),
    /// Read a value; prints every sibling when there are several
    Get(client::GetArgs),
    /// Delete a value
    Delete(client::DeleteArgs),
    /// Read a counter, or add to it (a bucket whose datatype is counter)
    Counter(types::CounterArgs),
    /// Read an add-wins set, or add and remove members (datatype set)
    Set(types::SetArgs),
    /// Read a map, or apply a JSON map operation (datatype map)
    Map(types::MapArgs),
    /// Show the node's view of the cluster
    Status(client::AdminArgs),
    /// Show partition ownership and preference lists
    Ring(client::AdminArgs),
    /// YCSB-style load generator against RiftKV, etcd or Redis (workloads a-f, open or
    /// closed loop, latency percentiles)
    Bench(Box<bench::BenchArgs>),
    /// Manage users, tokens and grants (a node with --auth on; needs the admin permission)
    User(users::UserArgs),
    /// Operations: online backup of a node, offline restore of a data dir
    Admin(admin::AdminCmd),
    /// Staged ring changes: show the pending plan, commit a staged one
    Cluster(cluster::ClusterCmd),
}

/// Why a client command failed; decides the exit code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    /// Bad arguments that clap could not catch (e.g. a key too long).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or the connection broke.
    #[error("{0}")]
    Connection(String),
    /// The server answered something this client cannot interpret.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// The server said no: a 4xx or 5xx answer.
    #[error("{}", server_error_line(*.status, .code.as_deref(), .message))]
    Server {
        status: u16,
        /// The `error` field of the JSON body, when there was one.
        code: Option<String>,
        /// The human message, with useful extra fields appended.
        message: String,
    },
    /// The answer was fine but cannot be shown the way that was asked (e.g. raw output of a
    /// key with siblings).
    #[error("{0}")]
    Refused(String),
    /// A local operation (e.g. `admin restore`) refused or failed.
    #[error("{0}")]
    Local(String),
}

fn server_error_line(status: u16, code: Option<&str>, message: &str) -> String {
    match code {
        Some(code) => format!("server answered {status} {code}: {message}"),
        None => format!("server answered {status}: {message}"),
    }
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Server { .. } | CliError::Refused(_) => 1,
            CliError::Usage(_)
            | CliError::Connection(_)
            | CliError::BadResponse(_)
            | CliError::Local(_) => 2,
        }
    }
}

/// Runs one parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Server(args) => run_server(*args),
        Command::Dev(args) => dev::run(args),
        Command::Put(args) => finish(client::put(&args)),
        Command::Get(args) => finish(client::get(&args)),
        Command::Delete(args) => finish(client::delete(&args)),
        Command::Counter(args) => finish(types::counter(&args)),
        Command::Set(args) => finish(types::set(&args)),
        Command::Map(args) => finish(types::map(&args)),
        Command::Status(args) => finish(client::status(&args)),
        Command::Ring(args) => finish(client::ring(&args)),
        Command::Bench(args) => ExitCode::from(bench::run(&args)),
        Command::User(args) => finish(users::run(&args)),
        Command::Admin(args) => finish(admin::run(&args)),
        Command::Cluster(args) => finish(cluster::run(&args)),
    }
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riftkv: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `riftkv server`: resolve the configuration, set up logging, then hand over to the node.
fn run_server(args: ServerArgs) -> ExitCode {
    let cfg = match ServerConfig::resolve(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("riftkv: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_format);
    for warning in cfg.startup_warnings() {
        tracing::warn!("{warning}");
    }
    server_entry(cfg)
}

/// Starts the node with a resolved configuration and runs it until it stops.
pub fn server_entry(cfg: ServerConfig) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("riftkv");
    // Unset: the runtime's own default, one worker per core this process may use.
    if let Some(n) = cfg.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("riftkv: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(riftkv_server::server::run_server(cfg));
    // Blocking storage tasks still queued must not hold the exit forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riftkv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON
/// lines. Calling it again is harmless: the first subscriber stays.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new("info"),
            std::env::var("RUST_LOG").ok().map(|v| (v, e.to_string())),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    };
    if installed && let Some((value, reason)) = bad_filter {
        // An unset RUST_LOG is normal; a malformed one deserves a word.
        tracing::warn!("ignoring RUST_LOG={value:?} ({reason}); logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let no = |status| CliError::Server {
            status,
            code: None,
            message: "m".into(),
        };
        for status in [404, 412, 503, 400, 409, 500] {
            assert_eq!(no(status).exit_code(), 1);
        }
        assert_eq!(CliError::Refused("x".into()).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Connection("x".into()).exit_code(), 2);
        assert_eq!(CliError::BadResponse("x".into()).exit_code(), 2);
    }

    #[test]
    fn server_error_renders_one_line() {
        let e = CliError::Server {
            status: 503,
            code: Some("quorum_unavailable".into()),
            message: "not enough replicas answered (needed: 2, got: 1)".into(),
        };
        assert_eq!(
            e.to_string(),
            "server answered 503 quorum_unavailable: not enough replicas answered (needed: 2, got: 1)"
        );
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["riftkv", "server", "--ring-size", "8"]).unwrap();
        assert!(matches!(cli.command, Command::Server(a) if a.ring_size == Some(8)));
        let cli = Cli::try_parse_from(["riftkv", "dev", "--nodes", "5"]).unwrap();
        assert!(matches!(cli.command, Command::Dev(a) if a.nodes == 5));
        let cli = Cli::try_parse_from(["riftkv", "get", "b", "k", "--r", "quorum"]).unwrap();
        assert!(matches!(cli.command, Command::Get(_)));
        let err = Cli::try_parse_from(["riftkv", "get", "b"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["riftkv", "put", "b", "k", "--w", "most"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
