//! `riftkv-jepsen`: RiftKV's Jepsen-style partition-testing harness.
//!
//! Real `riftkv server` processes, each in its own network namespace; a nemesis that cuts the
//! network with iptables, kills, pauses and re-clocks nodes, and wipes, corrupts or power-cuts
//! their disks; concurrent clients whose every operation goes into a history; and checkers
//! that prove (or disprove) that no acknowledged write was lost. Exit codes: 0 valid, 1
//! anomalies found, 2 could not run.

mod checker;
mod client;
mod cluster;
mod convergence;
mod history;
mod hosts;
mod nemesis;
mod report;
mod workload;

use checker::{FinalReads, Interval};
use clap::Parser;
use client::Client;
use cluster::{Cluster, ClusterError, NodeOptions};
use history::{OpType, Process, Recorder, op};
use hosts::Network;
use nemesis::{Fault, NemesisKind, Pacing, Planned};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use workload::Workload;

/// Exit code: the history is valid.
const EXIT_VALID: u8 = 0;
/// Exit code: the checker found anomalies.
const EXIT_ANOMALIES: u8 = 1;
/// Exit code: the test could not be run (or was interrupted).
const EXIT_COULD_NOT_RUN: u8 = 2;

/// Set by SIGINT/SIGTERM; every loop of the harness watches it.
static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[derive(Parser, Debug)]
#[command(
    name = "riftkv-jepsen",
    about = "Jepsen-style partition testing of RiftKV: real processes in network namespaces, \
             iptables partitions, kills, pauses, clock skew and disk faults, and a checker that \
             proves no acknowledged write was lost. Needs root. Exit 0 valid, 1 anomalies, 2 \
             could not run."
)]
struct Args {
    /// Number of nodes (each a `riftkv server` in its own network namespace)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(3..=200))]
    nodes: u16,
    /// Faults to inject, a comma-separated list: partition, kill, pause, clock, wipe (SIGKILL,
    /// delete the data dir, restart empty), corrupt (damage stored records), powerloss
    /// (SIGKILL loses unsynced writes); or all, none. corrupt and powerloss need a riftkv built
    /// with `--features fault-injection`; `all` includes them only when the binary is one
    #[arg(long, default_value = "partition")]
    nemesis: String,
    /// What the clients do and how the history is checked
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    workload: Workload,
    /// Seconds of workload (faults happen within it; final heal, convergence and final reads
    /// come after)
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    time_limit: u64,
    /// Concurrent client workers
    #[arg(long, default_value_t = 10)]
    concurrency: u16,
    /// Target total client operations per second
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Keys the workload spreads over
    #[arg(long, default_value_t = 5)]
    keys: u16,
    /// Directory for history.jsonl, results.json, the charts and report.html
    #[arg(long, default_value = "riftkv-jepsen-out", value_name = "DIR")]
    out: PathBuf,
    /// The riftkv binary [default: ${CARGO_TARGET_DIR:-$HOME/.cache/riftkv/target}/debug/riftkv]
    #[arg(long, value_name = "PATH")]
    riftkv_bin: Option<PathBuf>,
    /// Seed of the fault schedule and the clients' choices (random when absent)
    #[arg(long)]
    seed: Option<u64>,
    /// Mean quiet gap between faults, in seconds (each gap is uniform in [g/2, 3g/2])
    #[arg(long, default_value_t = 6.0, value_name = "SECS")]
    nemesis_gap: f64,
    /// Shortest time a fault is held, in seconds
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    fault_min: f64,
    /// Longest time a fault is held, in seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    fault_max: f64,
    /// Client request timeout in milliseconds
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    request_timeout_ms: u64,
    /// Quiet seconds after convergence (or its timeout) before the final reads
    #[arg(long, default_value_t = 3, value_name = "SECS")]
    quiet: u64,
    /// How long replicas get to converge after the final heal, in seconds
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    convergence_timeout: u64,
    /// Gossip period of the nodes
    #[arg(long, default_value_t = 300, value_name = "MS")]
    gossip_interval_ms: u64,
    /// Hinted-handoff period of the nodes
    #[arg(long, default_value_t = 300, value_name = "MS")]
    handoff_interval_ms: u64,
    /// Anti-entropy exchange period of the nodes (0: leave the server's default)
    #[arg(long, default_value_t = 500, value_name = "MS")]
    aae_interval_ms: u64,
    /// Ring size of the test cluster
    #[arg(long, default_value_t = 64)]
    ring_size: u32,
    /// Where the nodes keep their data during the run (wiped at start and after a clean run)
    #[arg(long, default_value = "/tmp/riftkv-jepsen-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Test only: make every node drop this fraction of writes (a planted bug the checker
    /// must find)
    #[arg(long, hide = true, value_name = "FRACTION")]
    fault_drop_writes: Option<f64>,
    /// Keep the last fault on until the workload ends, so the final heal lifts an active
    /// fault and convergence is timed from it (always on for the convergence workload)
    #[arg(long)]
    final_fault: bool,
    /// Only remove what an earlier run left behind (namespaces, links, processes), then exit
    #[arg(long)]
    cleanup_only: bool,
}

fn default_riftkv_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/riftkv/target")
        });
    target.join("debug/riftkv")
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<(), String> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| format!("cannot handle {sig}: {e}"))?;
    }
    Ok(())
}

/// Sleeps until `t`, waking early when the run is stopped.
fn sleep_until(t: Instant) {
    while !stopped() {
        let now = Instant::now();
        if now >= t {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&args))) {
        Ok(c) => c,
        Err(_) => {
            eprintln!("riftkv-jepsen: the harness panicked; everything it started was removed");
            EXIT_COULD_NOT_RUN
        }
    };
    ExitCode::from(code)
}

/// Holds the single-run lock: two harness runs would fight over the same namespaces.
fn take_lock() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use nix::fcntl::{Flock, FlockArg};
    let path = "/run/riftkv-jepsen.lock";
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|_| "another riftkv-jepsen run is active (its lock is held)".to_string())
}

fn preflight(args: &Args, bin: &Path, kinds: &[NemesisKind]) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "riftkv-jepsen needs root: it creates network namespaces, a bridge and iptables \
             rules (run it with sudo)"
                .into(),
        );
    }
    for tool in ["ip", "iptables"] {
        hosts::run("which", &[tool]).map_err(|_| {
            format!("`{tool}` is not installed (apt-get install iproute2 iptables)")
        })?;
    }
    if !args.cleanup_only && !bin.is_file() {
        return Err(format!(
            "riftkv binary not found at {} (build it with `cargo build`, or pass --riftkv-bin)",
            bin.display()
        ));
    }
    if kinds.contains(&NemesisKind::Clock) && !Path::new(cluster::FAKETIME_LIB).is_file() {
        return Err(format!(
            "the clock nemesis needs libfaketime ({} is missing; apt-get install faketime)",
            cluster::FAKETIME_LIB
        ));
    }
    if let Some(f) = args.fault_drop_writes
        && !(f > 0.0 && f <= 1.0)
    {
        return Err("--fault-drop-writes must be in (0, 1]".into());
    }
    if args.rate <= 0.0 || args.concurrency == 0 || args.keys == 0 {
        return Err("--rate, --concurrency and --keys must be positive".into());
    }
    if args.fault_min > args.fault_max {
        return Err("--fault-min must not exceed --fault-max".into());
    }
    Ok(())
}

fn run(args: &Args) -> u8 {
    let selection = match nemesis::parse_kinds(&args.nemesis) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("riftkv-jepsen: {e}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let kinds = selection.kinds.clone();
    let bin = args.riftkv_bin.clone().unwrap_or_else(default_riftkv_bin);
    if let Err(e) = preflight(args, &bin, &kinds) {
        eprintln!("riftkv-jepsen: {e}");
        return EXIT_COULD_NOT_RUN;
    }
    let _lock = match take_lock() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("riftkv-jepsen: {e}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    if let Err(e) = install_signal_handlers() {
        eprintln!("riftkv-jepsen: {e}");
        return EXIT_COULD_NOT_RUN;
    }
    let leftovers = hosts::clean_leftovers();
    if !leftovers.is_empty() {
        eprintln!(
            "riftkv-jepsen: removed leftovers of an earlier run: {}",
            leftovers.join(", ")
        );
    }
    if args.data_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&args.data_dir)
    {
        eprintln!(
            "riftkv-jepsen: cannot remove the old data dir {}: {e}",
            args.data_dir.display()
        );
        return EXIT_COULD_NOT_RUN;
    }
    if args.cleanup_only {
        println!("riftkv-jepsen: clean");
        return EXIT_VALID;
    }
    if let Err(e) =
        std::fs::create_dir_all(&args.out).and_then(|_| std::fs::create_dir_all(&args.data_dir))
    {
        eprintln!("riftkv-jepsen: cannot create {}: {e}", args.out.display());
        return EXIT_COULD_NOT_RUN;
    }
    let recorder = match Recorder::new(Some(&args.out.join("history.jsonl"))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riftkv-jepsen: cannot write the history: {e}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let n = usize::from(args.nodes);
    let mut network = match Network::create(n) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("riftkv-jepsen: cannot build the test network: {e}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let opts = NodeOptions {
        riftkv_bin: bin,
        data_root: args.data_dir.clone(),
        ring_size: args.ring_size,
        gossip_interval_ms: args.gossip_interval_ms,
        handoff_interval_ms: args.handoff_interval_ms,
        aae_interval_ms: args.aae_interval_ms,
        faketime: kinds.contains(&NemesisKind::Clock),
        drop_writes: args.fault_drop_writes,
        // Set whenever powerloss may run (also through `all`): a build without the feature
        // ignores it, and whether the binary has it is known only once a node answers.
        powerloss: kinds.contains(&NemesisKind::Powerloss),
    };
    let mut cluster = match Cluster::new(n, opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riftkv-jepsen: cannot set up HTTP: {e}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let outcome = session(args, &selection, &network, &mut cluster, &recorder);
    cluster.stop_all();
    let logs = copy_logs(&cluster, &args.out);
    drop(cluster);
    network.teardown();
    if let Err(e) = recorder.flush() {
        eprintln!("riftkv-jepsen: the history file is incomplete: {e}");
    }
    match outcome {
        Ok(code) => {
            let _ = std::fs::remove_dir_all(&args.data_dir);
            if logs.len() < usize::from(args.nodes) {
                eprintln!(
                    "riftkv-jepsen: some node logs could not be copied to {}",
                    args.out.display()
                );
            }
            code
        }
        Err(e) => {
            if stopped() {
                eprintln!("riftkv-jepsen: interrupted; everything it started was removed");
            } else {
                eprintln!("riftkv-jepsen: could not run: {e}");
            }
            EXIT_COULD_NOT_RUN
        }
    }
}

/// Copies each node's log into `out/logs`; returns the relative paths.
fn copy_logs(cluster: &Cluster, out: &Path) -> Vec<String> {
    let dir = out.join("logs");
    if std::fs::create_dir_all(&dir).is_err() {
        return Vec::new();
    }
    cluster
        .nodes
        .iter()
        .filter_map(|n| {
            let name = format!("{}.log", n.id);
            std::fs::copy(&n.log_path, dir.join(&name))
                .ok()
                .map(|_| format!("logs/{name}"))
        })
        .collect()
}

fn cluster_err(e: ClusterError) -> String {
    e.to_string()
}

/// Applies a fault. Returns what it did when there is more to tell than its description
/// (the corrupt nemesis: how many records each node damaged).
fn apply(
    fault: &Fault,
    bucket: &str,
    network: &Network,
    cluster: &mut Cluster,
) -> Result<Option<serde_json::Value>, String> {
    match fault {
        Fault::Partition { grudge, .. } => {
            network.partition(grudge).map_err(|e| e.to_string())?;
        }
        // A power loss is a kill of a node in the power-loss storage mode: what it had not
        // synced dies with the process.
        Fault::Kill { nodes } | Fault::Powerloss { nodes } => {
            nodes.iter().for_each(|&i| cluster.kill(i));
        }
        Fault::Pause { nodes } => {
            nodes.iter().for_each(|&i| cluster.pause(i));
        }
        Fault::Clock { offsets } => {
            for &(i, off) in offsets {
                cluster.set_clock(i, off).map_err(cluster_err)?;
            }
        }
        Fault::Wipe { nodes } => {
            for &i in nodes {
                cluster.wipe(i).map_err(cluster_err)?;
            }
        }
        Fault::Corrupt { nodes, fraction } => {
            // A node that cannot be reached (it crashed) is noted, not fatal: the fault is
            // then simply smaller.
            let mut out = serde_json::Map::new();
            for &i in nodes {
                let v = match cluster.corrupt(i, bucket, *fraction) {
                    Ok(d) => json!(d),
                    Err(e) => json!({"error": e.to_string()}),
                };
                out.insert(cluster::node_id(i), v);
            }
            return Ok(Some(serde_json::Value::Object(out)));
        }
    }
    Ok(None)
}

fn heal(fault: &Fault, network: &Network, cluster: &mut Cluster) -> Result<(), String> {
    match fault {
        Fault::Partition { .. } => network.heal().map_err(|e| e.to_string()),
        Fault::Kill { nodes } | Fault::Wipe { nodes } | Fault::Powerloss { nodes } => {
            for &i in nodes {
                cluster.start(i).map_err(cluster_err)?;
            }
            Ok(())
        }
        Fault::Pause { nodes } => {
            nodes.iter().for_each(|&i| cluster.resume(i));
            Ok(())
        }
        Fault::Clock { offsets } => {
            for &(i, _) in offsets {
                cluster.set_clock(i, 0).map_err(cluster_err)?;
            }
            Ok(())
        }
        // Damage stays until the database repairs it.
        Fault::Corrupt { .. } => Ok(()),
    }
}

/// One line for what `apply` reported (corrupt: records damaged per node).
fn describe_result(result: &serde_json::Value) -> String {
    let Some(m) = result.as_object() else {
        return result.to_string();
    };
    m.iter()
        .map(|(node, v)| match (v.get("damaged"), v.get("matched")) {
            (Some(d), Some(of)) => format!("{node} damaged {d} of {of}"),
            _ => format!(
                "{node} failed: {}",
                v.get("error").and_then(|e| e.as_str()).unwrap_or("?")
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn nemesis_op(recorder: &Recorder, f: &str, value: serde_json::Value) -> u64 {
    recorder.record(op(
        OpType::Info,
        f,
        value,
        Process::Named("nemesis".into()),
        "",
        None,
    ))
}

/// Restarts nodes that exited on their own and reports them.
fn check_crashes(cluster: &mut Cluster, recorder: &Recorder, crashes: &mut Vec<String>) {
    for (i, status) in cluster.reap_crashed() {
        let msg = format!(
            "n{i} exited on its own ({status}); last log lines: {}",
            cluster::tail(&cluster.nodes[i - 1].log_path, 5).replace('\n', " | ")
        );
        eprintln!("riftkv-jepsen: {msg}");
        nemesis_op(
            recorder,
            "crash",
            json!({"node": format!("n{i}"), "status": status}),
        );
        crashes.push(msg);
        let _ = cluster.start(i);
    }
}

/// Runs the schedule; returns the fault intervals, each with its detail name.
fn run_nemesis(
    schedule: &[Planned],
    bucket: &str,
    started: Instant,
    network: &Network,
    cluster: &mut Cluster,
    recorder: &Recorder,
    crashes: &mut Vec<String>,
) -> Result<Vec<(Interval, &'static str)>, String> {
    let mut out = Vec::new();
    for p in schedule {
        let at = started + p.at;
        while Instant::now() < at && !stopped() {
            check_crashes(cluster, recorder, crashes);
            sleep_until(at.min(Instant::now() + Duration::from_millis(500)));
        }
        if stopped() {
            break;
        }
        let kind = p.fault.kind().name();
        let desc = p.fault.describe();
        println!("[{:6.1}s] {desc}", started.elapsed().as_secs_f64());
        let start_ns = nemesis_op(
            recorder,
            &format!("start-{kind}"),
            json!({"fault": p.fault, "description": desc}),
        );
        let applied = apply(&p.fault, bucket, network, cluster);
        let mut desc = desc;
        if let Ok(Some(result)) = &applied {
            let line = describe_result(result);
            println!("[{:6.1}s] {line}", started.elapsed().as_secs_f64());
            nemesis_op(
                recorder,
                &format!("{kind}-result"),
                json!({"result": result, "description": line}),
            );
            desc = format!("{desc}: {line}");
        }
        let until = Instant::now() + p.hold;
        while Instant::now() < until && !stopped() {
            sleep_until(until.min(Instant::now() + Duration::from_millis(500)));
        }
        let healed = heal(&p.fault, network, cluster);
        let end_ns = nemesis_op(
            recorder,
            &format!("stop-{kind}"),
            json!({"description": desc}),
        );
        println!("[{:6.1}s] healed: {desc}", started.elapsed().as_secs_f64());
        applied?;
        healed?;
        out.push((
            Interval {
                start_ns,
                end_ns,
                kind: kind.to_string(),
                description: desc,
            },
            p.fault.detail(),
        ));
        check_crashes(cluster, recorder, crashes);
    }
    Ok(out)
}

fn names(kinds: &[NemesisKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

/// The nemeses this run can use: those needing a fault-injection build are checked against
/// the running binary (a probe of its corrupt route on n1). Named but unsupported: an error;
/// left out of `all`: a note.
fn resolve_nemeses(
    selection: &nemesis::Selection,
    cluster: &Cluster,
    bucket: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<NemesisKind>, String> {
    if !selection.wants_fault_build() {
        return Ok(selection.kinds.clone());
    }
    let fault_build = cluster.is_fault_build(1, bucket).ok_or_else(|| {
        format!(
            "cannot tell whether riftkv is a fault-injection build: {}{} gave neither 200 nor \
             404",
            cluster::api_url(1),
            cluster::CORRUPT_PATH
        )
    })?;
    let (kinds, left_out) = selection.resolve(fault_build).map_err(|e| e.to_string())?;
    if !left_out.is_empty() {
        let note = format!(
            "`all` left out {}: riftkv is not a fault-injection build",
            names(&left_out)
        );
        println!("riftkv-jepsen: {note}; nemesis [{}]", names(&kinds));
        notes.push(note);
    }
    Ok(kinds)
}

/// Installs the workload's bucket properties and waits until every node knows them.
fn install_props(client: &Client, n: usize, workload: Workload) -> Result<(), String> {
    let props = workload.props();
    let bucket = workload.bucket();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match client.set_props(&cluster::api_url(1), bucket, &props) {
            Ok(()) => break,
            Err(e) => e,
        };
        if Instant::now() > deadline || stopped() {
            return Err(format!("cannot set the props of {bucket}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every node must show every prop we set (a data type bucket answers 400 to typed
    // requests on a node that has not yet seen its datatype).
    let shows_all = |p: &serde_json::Value| {
        props
            .as_object()
            .is_some_and(|m| m.iter().all(|(k, v)| p.get(k) == Some(v)))
    };
    loop {
        let all = (1..=n).all(|i| {
            client
                .props(&cluster::api_url(i), bucket)
                .is_ok_and(|p| shows_all(&p))
        });
        if all {
            return Ok(());
        }
        if Instant::now() > deadline || stopped() {
            return Err(format!("the props of {bucket} did not reach every node"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn session(
    args: &Args,
    selection: &nemesis::Selection,
    network: &Network,
    cluster: &mut Cluster,
    recorder: &Recorder,
) -> Result<u8, String> {
    let n = usize::from(args.nodes);
    let seed = args.seed.unwrap_or_else(rand::random);
    let workload = args.workload;
    println!(
        "riftkv-jepsen: {} nodes, workload {}, nemesis [{}], {} s, seed {seed}, output {}",
        n,
        workload.name(),
        names(&selection.kinds),
        args.time_limit,
        args.out.display()
    );
    cluster
        .start_all(Duration::from_secs(120), &stopped)
        .map_err(cluster_err)?;
    println!("riftkv-jepsen: cluster settled");
    let timeout = Duration::from_millis(args.request_timeout_ms.max(100));
    let admin = Client::new(timeout).map_err(|e| e.to_string())?;
    install_props(&admin, n, workload)?;
    let mut notes = Vec::new();
    let kinds = resolve_nemeses(selection, cluster, workload.bucket(), &mut notes)?;
    let kinds = kinds.as_slice();

    let keys = workload::keys(workload, usize::from(args.keys));
    let node_list: Vec<usize> = (1..=n).collect();
    let pacing = Pacing {
        gap: secs(args.nemesis_gap),
        hold_min: secs(args.fault_min),
        hold_max: secs(args.fault_max),
    };
    let total = Duration::from_secs(args.time_limit);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut schedule = nemesis::plan(kinds, &node_list, total, pacing, &mut rng);
    if args.final_fault || workload == Workload::Convergence {
        nemesis::hold_last_until(&mut schedule, total);
    }

    let concurrency = u64::from(args.concurrency);
    let started = Instant::now();
    let shared = workload::Shared {
        workload,
        recorder: recorder.clone(),
        nodes: n,
        keys: keys.clone(),
        counter: AtomicU64::new(0),
        stop: &STOP,
        until: started + total,
        pace: Duration::from_secs_f64((concurrency as f64 / args.rate).min(60.0)),
        concurrency,
    };
    let mut crashes = Vec::new();
    let run_started = recorder.now();
    let nemesis_result = std::thread::scope(|s| {
        for w in 0..concurrency {
            let shared = &shared;
            s.spawn(move || {
                let client = match Client::new(timeout) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("riftkv-jepsen: worker {w} has no HTTP client: {e}");
                        return;
                    }
                };
                let mut rng = StdRng::seed_from_u64(seed ^ (w + 1).wrapping_mul(0x9E37_79B9));
                workload::run_worker(shared, w, &client, &mut rng);
            });
        }
        // Faults run on this (the main) thread: nodes restarted here keep a live parent.
        let r = run_nemesis(
            &schedule,
            workload.bucket(),
            started,
            network,
            cluster,
            recorder,
            &mut crashes,
        );
        while Instant::now() < started + total && !stopped() {
            check_crashes(cluster, recorder, &mut crashes);
            sleep_until((started + total).min(Instant::now() + Duration::from_millis(500)));
        }
        r
    });
    if stopped() {
        return Err("interrupted".into());
    }
    // Final heal, whatever happened.
    let heal_net = network.heal().map_err(|e| e.to_string());
    let heal_nodes = cluster.heal_all().map_err(cluster_err);
    nemesis_op(recorder, "heal-all", json!({"description": "final heal"}));
    let healed_at = Instant::now();
    println!(
        "[{:6.1}s] final heal; workload over",
        started.elapsed().as_secs_f64()
    );
    let intervals = nemesis_result?;
    heal_net?;
    heal_nodes?;

    // Convergence is timed from the heal, with no client reads (they would repair replicas
    // on the way); then a quiet period and a settled ring before the final reads.
    let conv = convergence::wait(
        &admin,
        n,
        workload.bucket(),
        &keys,
        healed_at,
        Duration::from_secs(args.convergence_timeout),
        &stopped,
    );
    match conv.seconds {
        Some(s) => println!("riftkv-jepsen: replicas converged {s:.1} s after the final heal"),
        None => println!(
            "riftkv-jepsen: replicas did not converge within {} s: {}",
            args.convergence_timeout,
            conv.diverging.join("; ")
        ),
    }
    sleep_until(Instant::now() + Duration::from_secs(args.quiet));
    if let Err(e) = cluster.wait_settled(Instant::now() + Duration::from_secs(60), &stopped) {
        notes.push(format!(
            "the ring had not settled before the final reads: {e}"
        ));
    }
    if stopped() {
        return Err("interrupted".into());
    }
    let mut finals = Finals::default();
    if workload.is_typed() {
        // Retried until every node agrees, within the convergence timeout.
        let target = workload::FinalTarget {
            workload,
            recorder,
            nodes: n,
            keys: &keys,
        };
        let deadline = Instant::now() + Duration::from_secs(args.convergence_timeout.max(10));
        finals.typed = workload::final_type_reads(&target, &admin, deadline);
    } else {
        finals.plain = workload::final_reads(
            workload,
            recorder,
            &admin,
            n,
            &keys,
            Instant::now() + Duration::from_secs(60),
        );
    }
    check_crashes(cluster, recorder, &mut crashes);
    if stopped() {
        return Err("interrupted".into());
    }
    let history = recorder.snapshot();
    let results = evaluate(
        args,
        kinds,
        seed,
        &history,
        &finals,
        &keys,
        intervals,
        conv,
        crashes,
        notes,
        recorder.now().saturating_sub(run_started),
    );
    write_outputs(&args.out, &history, &results, cluster)?;
    print_summary(&results, &args.out);
    Ok(match results.verdict.as_str() {
        "valid" => EXIT_VALID,
        "anomalies" => EXIT_ANOMALIES,
        _ => EXIT_COULD_NOT_RUN,
    })
}

/// One anomaly line per lost item (the first 20): `{what}: KEY {item} VALUE {how} on NODES`.
fn lost_lines<T: std::fmt::Display>(
    lost: &[checker::Lost<T>],
    what: &str,
    item: &str,
    how: &str,
) -> Vec<String> {
    lost.iter()
        .take(20)
        .map(|l| {
            format!(
                "{what}: {} {item} {} {how} on {}",
                l.key,
                l.value,
                l.missing_on.join(",")
            )
        })
        .collect()
}

/// The final reads: plain values (set-like and register workloads) or data type values.
#[derive(Default)]
struct Finals {
    plain: BTreeMap<String, BTreeMap<String, client::Read>>,
    typed: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// What a data type checker found, for the summary and the anomaly list.
struct TypedOutcome {
    attempted: usize,
    acked: usize,
    lost: usize,
    recovered: usize,
    unexpected: usize,
    anomalies: Vec<String>,
    unread_keys: Vec<String>,
}

fn check_counter(
    history: &[history::Op],
    finals: &Finals,
    keys: &[String],
) -> (checker::CounterResult, TypedOutcome) {
    let mut anomalies = Vec::new();
    let mut values: checker::CounterFinals = BTreeMap::new();
    for (node, m) in &finals.typed {
        for (key, v) in m {
            match v.as_i64() {
                Some(x) => {
                    values
                        .entry(node.clone())
                        .or_default()
                        .insert(key.clone(), x);
                }
                None => anomalies.push(format!("{node} {key}: not a counter value: {v}")),
            }
        }
    }
    let r = checker::check_counter(history, &values, keys);
    for k in r.keys.iter().filter(|k| k.lost > 0 || k.double_counted > 0) {
        anomalies.push(format!(
            "{}: acknowledged increments sum to {}, unknown ones to {}, final values {:?}: \
             lost {}, double-counted {}",
            k.key, k.ok_sum, k.info_sum, k.final_values, k.lost, k.double_counted
        ));
    }
    for v in r.read_violations.iter().take(20) {
        anomalies.push(format!(
            "read of {} on {} at {:.3} s saw {}, more than the {} invoked before it completed",
            v.key,
            v.node,
            v.time as f64 / 1e9,
            v.value,
            v.upper_bound
        ));
    }
    for d in &r.disagreements {
        anomalies.push(format!("nodes disagree at the end: {d}"));
    }
    let o = TypedOutcome {
        attempted: r.attempted,
        acked: r.acked,
        lost: usize::try_from(r.lost_amount).unwrap_or(usize::MAX),
        recovered: 0,
        unexpected: usize::try_from(r.double_counted_amount).unwrap_or(usize::MAX),
        anomalies,
        unread_keys: r.unread_keys.clone(),
    };
    (r, o)
}

fn check_crdt_set(
    history: &[history::Op],
    finals: &Finals,
    keys: &[String],
) -> (checker::CrdtSetResult, TypedOutcome) {
    let mut anomalies = Vec::new();
    let mut sets: FinalReads<String> = BTreeMap::new();
    for (node, m) in &finals.typed {
        for (key, v) in m {
            match v.as_array() {
                Some(a) => {
                    let elems = a.iter().filter_map(|x| x.as_str().map(str::to_string));
                    sets.entry(node.clone())
                        .or_default()
                        .insert(key.clone(), elems.collect());
                }
                None => anomalies.push(format!("{node} {key}: not a set value: {v}")),
            }
        }
    }
    let r = checker::check_crdt_set(history, &sets, keys);
    anomalies.extend(lost_lines(
        &r.lost,
        "lost add",
        "element",
        "(acknowledged, never removed) missing",
    ));
    for x in r.resurrected.iter().take(20) {
        anomalies.push(format!(
            "resurrected: {} element {} (removed, acknowledged) present on {}",
            x.key,
            x.value,
            x.present_on.join(",")
        ));
    }
    for (k, e) in r.phantoms.iter().take(20) {
        anomalies.push(format!("phantom: {k} element {e} was never added"));
    }
    for d in &r.disagreements {
        anomalies.push(format!("nodes disagree at the end: {d}"));
    }
    let o = TypedOutcome {
        attempted: r.attempted_adds,
        acked: r.acked_adds,
        lost: r.lost_count + r.resurrected_count,
        recovered: r.recovered_count,
        unexpected: r.phantom_count,
        anomalies,
        unread_keys: r.unread_keys.clone(),
    };
    (r, o)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    args: &Args,
    kinds: &[NemesisKind],
    seed: u64,
    history: &[history::Op],
    all_finals: &Finals,
    keys: &[String],
    intervals: Vec<(Interval, &'static str)>,
    conv: convergence::Convergence,
    crashes: Vec<String>,
    mut notes: Vec<String>,
    duration_ns: u64,
) -> report::Results {
    let workload = args.workload;
    let mut anomalies = Vec::new();
    let mut unknown = false;
    let (mut set, mut register, mut counter, mut crdt_set) = (None, None, None, None);
    let (attempted, acked, lost, recovered, unexpected);
    let finals = &all_finals.plain;
    if workload.is_typed() {
        let o = if workload == Workload::Counter {
            let (r, o) = check_counter(history, all_finals, keys);
            counter = Some(r);
            o
        } else {
            let (r, o) = check_crdt_set(history, all_finals, keys);
            crdt_set = Some(r);
            o
        };
        (attempted, acked, lost, recovered, unexpected) =
            (o.attempted, o.acked, o.lost, o.recovered, o.unexpected);
        anomalies.extend(o.anomalies);
        if !o.unread_keys.is_empty() {
            unknown = true;
            notes.push(format!(
                "no node could read {} at the end",
                o.unread_keys.join(", ")
            ));
        }
    } else if workload.is_set_like() {
        let mut sets: FinalReads<u64> = BTreeMap::new();
        for (node, m) in finals {
            for (key, read) in m {
                match workload::union_of(read) {
                    Ok(s) => {
                        sets.entry(node.clone()).or_default().insert(key.clone(), s);
                    }
                    Err(e) => anomalies.push(format!("{node} {key}: unreadable value: {e}")),
                }
            }
        }
        let r = checker::check_set(history, &sets, keys);
        attempted = r.attempted;
        acked = r.acked;
        lost = r.lost_count;
        recovered = r.recovered_count;
        unexpected = r.unexpected_count;
        anomalies.extend(lost_lines(
            &r.lost,
            "lost",
            "element",
            "(acknowledged) missing",
        ));
        if r.lost.len() > 20 {
            anomalies.push(format!("... and {} more lost elements", r.lost.len() - 20));
        }
        for (k, e) in r.unexpected.iter().take(20) {
            anomalies.push(format!("unexpected: {k} element {e} was never added"));
        }
        if !r.unread_keys.is_empty() {
            unknown = true;
            notes.push(format!(
                "no node could read {} at the end",
                r.unread_keys.join(", ")
            ));
        }
        set = Some(r);
    } else {
        let regs: FinalReads<String> = finals
            .iter()
            .map(|(node, m)| {
                (
                    node.clone(),
                    m.iter()
                        .map(|(k, r)| {
                            (
                                k.clone(),
                                r.values
                                    .iter()
                                    .map(|v| String::from_utf8_lossy(v).into_owned())
                                    .collect::<BTreeSet<String>>(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let r = checker::check_register(history, &regs, keys);
        attempted = r.attempted;
        acked = r.acked;
        lost = r.lost_count;
        unexpected = r.unexpected_count;
        recovered = 0;
        anomalies.extend(lost_lines(
            &r.lost,
            "lost",
            "value",
            "(acknowledged) neither present nor superseded",
        ));
        for (k, v) in r.unexpected.iter().take(20) {
            anomalies.push(format!("unexpected: {k} value {v} was never written"));
        }
        for (node, k, old, new) in r.stale_siblings.iter().take(20) {
            anomalies.push(format!(
                "stale sibling on {node}: {k} keeps {old} next to {new}, whose context had seen it"
            ));
        }
        if !r.unread_keys.is_empty() {
            unknown = true;
            notes.push(format!(
                "no node could read {} at the end",
                r.unread_keys.join(", ")
            ));
        }
        register = Some(r);
    }
    if workload == Workload::Convergence && !conv.converged {
        anomalies.push(format!(
            "replicas did not converge within {} s of the final heal: {}",
            args.convergence_timeout,
            conv.diverging.join("; ")
        ));
    } else if !conv.converged {
        notes.push(format!(
            "replicas did not converge (without reads) within {} s of the final heal: {}",
            args.convergence_timeout,
            conv.diverging.join("; ")
        ));
    }
    for c in crashes {
        anomalies.push(format!("crash: {c}"));
    }
    let details: Vec<&str> = intervals.iter().map(|(_, d)| *d).collect();
    let faults: Vec<Interval> = intervals.into_iter().map(|(i, _)| i).collect();
    let availability = checker::availability(history, &faults);
    let verdict = if !anomalies.is_empty() {
        "anomalies"
    } else if unknown {
        "unknown"
    } else {
        "valid"
    };
    report::Results {
        valid: verdict == "valid",
        verdict: verdict.to_string(),
        workload: workload.name().to_string(),
        nodes: usize::from(args.nodes),
        concurrency: usize::from(args.concurrency),
        time_limit_secs: args.time_limit,
        seed,
        nemeses: kinds.iter().map(|k| k.name().to_string()).collect(),
        ops: checker::ops_by_type(history),
        attempted,
        acked,
        lost,
        recovered,
        unexpected,
        availability_during_faults_pct: availability.during_faults_pct,
        availability_overall_pct: availability.overall_pct,
        availability,
        convergence_seconds: conv.seconds,
        convergence: conv,
        nemesis: report::nemesis_counts(&faults, &details),
        faults,
        anomalies,
        notes,
        set,
        register,
        counter,
        crdt_set,
        fault_drop_writes: args.fault_drop_writes,
        duration_secs: duration_ns as f64 / 1e9,
    }
}

fn write_outputs(
    out: &Path,
    history: &[history::Op],
    results: &report::Results,
    cluster: &Cluster,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    std::fs::write(out.join("results.json"), json + "\n")
        .map_err(|e| format!("cannot write results.json: {e}"))?;
    if let Err(e) = report::latency_plot(&out.join("latency.png"), history, &results.faults) {
        eprintln!("riftkv-jepsen: latency chart failed: {e}");
    }
    if let Err(e) = report::rate_plot(&out.join("rate.png"), history, &results.faults) {
        eprintln!("riftkv-jepsen: rate chart failed: {e}");
    }
    let logs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("logs/{}.log", n.id))
        .collect();
    std::fs::write(out.join("report.html"), report::html(results, &logs))
        .map_err(|e| format!("cannot write report.html: {e}"))?;
    Ok(())
}

fn print_summary(r: &report::Results, out: &Path) {
    println!("---");
    println!(
        "workload {}: {} ops ok, {} fail, {} info",
        r.workload,
        r.ops.get("ok").unwrap_or(&0),
        r.ops.get("fail").unwrap_or(&0),
        r.ops.get("info").unwrap_or(&0)
    );
    println!(
        "attempted {}, acknowledged {}, lost {}, recovered {}, unexpected {}",
        r.attempted, r.acked, r.lost, r.recovered, r.unexpected
    );
    println!(
        "availability during faults {}, overall {}; convergence {}",
        r.availability_during_faults_pct
            .map_or("n/a".into(), |x| format!("{x:.1}%")),
        r.availability_overall_pct
            .map_or("n/a".into(), |x| format!("{x:.1}%")),
        r.convergence_seconds
            .map_or("not reached".into(), |x| format!("{x:.1} s"))
    );
    for a in r.anomalies.iter().take(10) {
        println!("anomaly: {a}");
    }
    for nt in &r.notes {
        println!("note: {nt}");
    }
    println!(
        "verdict: {} (report: {})",
        r.verdict.to_uppercase(),
        out.join("report.html").display()
    );
}
