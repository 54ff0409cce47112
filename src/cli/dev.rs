//! `riftkv dev`: a local cluster of real `riftkv server` processes for development.
//!
//! The node layout is a pure function of (nodes, base port, data dir) so it can be tested; the
//! supervisor around it spawns the processes, waits for the ring to settle, and stops every
//! child on Ctrl-C or SIGTERM (SIGTERM first, SIGKILL after a grace period).

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Cluster name of every dev cluster.
pub const DEV_CLUSTER_NAME: &str = "riftkv-dev";
/// Peer ports sit this far above API ports.
pub const PEER_PORT_OFFSET: u16 = 100;
/// At most this many nodes, so API ports (base+1..) never reach the peer ports (base+101..).
pub const MAX_DEV_NODES: u16 = 99;
/// How long a child gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// File each node's stdout and stderr go to, inside its data dir.
pub const LOG_FILE: &str = "server.log";

/// Environment variables the plan decides; inherited values would contradict it.
const PLANNED_ENV: &[&str] = &[
    "RIFTKV_NODE_ID",
    "RIFTKV_API_ADDR",
    "RIFTKV_PEER_ADDR",
    "RIFTKV_ADVERTISE_API_ADDR",
    "RIFTKV_ADVERTISE_PEER_ADDR",
    "RIFTKV_DATA_DIR",
    "RIFTKV_SEEDS",
    "RIFTKV_CLUSTER_NAME",
    "RIFTKV_CONFIG",
];

/// `riftkv dev`.
#[derive(Args, Clone, Debug)]
pub struct DevArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=MAX_DEV_NODES as i64))]
    pub nodes: u16,
    /// Node k listens on API port BASE+k and peer port BASE+100+k
    #[arg(long, default_value_t = 8700, value_name = "BASE")]
    pub base_port: u16,
    /// Parent directory of the nodes' data dirs (node<k> inside)
    #[arg(long, default_value = "./riftkv-dev", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Seconds to wait for the ring to settle before giving up
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub startup_timeout: u64,
}

/// Why the dev cluster could not be planned or started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DevError {
    #[error("--nodes must be between 1 and {MAX_DEV_NODES}, got {0}")]
    NodeCount(u16),
    #[error("--base-port {base} is too high for {nodes} nodes: peer ports would pass 65535")]
    PortRange { base: u16, nodes: u16 },
    #[error("--base-port must be at least 1")]
    ZeroBase,
}

/// How one node of the dev cluster is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// 1-based.
    pub index: u16,
    pub node_id: String,
    pub api_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Empty for the founder of a fresh cluster.
    pub seeds: Vec<SocketAddr>,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

impl NodePlan {
    /// The node's REST base URL.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Arguments after the binary name.
    pub fn server_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "server".into(),
            "--node-id".into(),
            self.node_id.clone().into(),
            "--api-addr".into(),
            self.api_addr.to_string().into(),
            "--peer-addr".into(),
            self.peer_addr.to_string().into(),
            "--data-dir".into(),
            self.data_dir.clone().into_os_string(),
            "--cluster-name".into(),
            DEV_CLUSTER_NAME.into(),
        ];
        if !self.seeds.is_empty() {
            let seeds: Vec<String> = self.seeds.iter().map(ToString::to_string).collect();
            a.push("--seeds".into());
            a.push(seeds.join(",").into());
        }
        a
    }
}

/// Lays out the cluster. Fresh: node 1 founds, the others join through it. Restart: every node
/// gets every other node as a seed, so whichever comes up first is found by the rest.
pub fn plan_cluster(
    nodes: u16,
    base_port: u16,
    data_dir: &Path,
    restart: bool,
) -> Result<Vec<NodePlan>, DevError> {
    if nodes == 0 || nodes > MAX_DEV_NODES {
        return Err(DevError::NodeCount(nodes));
    }
    if base_port == 0 {
        return Err(DevError::ZeroBase);
    }
    if u32::from(base_port) + u32::from(PEER_PORT_OFFSET) + u32::from(nodes) > 65_535 {
        return Err(DevError::PortRange {
            base: base_port,
            nodes,
        });
    }
    let peer = |k: u16| local(base_port + PEER_PORT_OFFSET + k);
    Ok((1..=nodes)
        .map(|k| {
            let dir = data_dir.join(format!("node{k}"));
            let seeds = if restart {
                (1..=nodes).filter(|&j| j != k).map(peer).collect()
            } else if k == 1 {
                Vec::new()
            } else {
                vec![peer(1)]
            };
            NodePlan {
                index: k,
                node_id: format!("node{k}"),
                api_addr: local(base_port + k),
                peer_addr: peer(k),
                log_path: dir.join(LOG_FILE),
                data_dir: dir,
                seeds,
            }
        })
        .collect())
}

/// True when some node dir already holds server state (anything besides its log), i.e. this
/// run restarts an existing cluster.
pub fn is_restart(data_dir: &Path, nodes: u16) -> bool {
    (1..=nodes).any(|k| {
        std::fs::read_dir(data_dir.join(format!("node{k}")))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name() != LOG_FILE)
            })
            .unwrap_or(false)
    })
}

/// What one node's `/v1/admin/status` says about readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Answered, but not settled yet; the text says why.
    Waiting(String),
    /// Did not answer usefully.
    Unreachable(String),
}

/// A node is ready when it reports `ring_settled: true` and lists the expected member count.
pub fn readiness(status: &serde_json::Value, expected_members: usize) -> Readiness {
    let settled = status.get("ring_settled").and_then(|v| v.as_bool());
    let members = status
        .get("members")
        .and_then(|v| v.as_array())
        .map(Vec::len);
    match (settled, members) {
        (Some(true), Some(n)) if n == expected_members => Readiness::Ready,
        (Some(s), Some(n)) => Readiness::Waiting(format!(
            "{n}/{expected_members} members, ring {}",
            if s { "settled" } else { "not settled" }
        )),
        _ => Readiness::Unreachable("status answer lacks ring_settled or members".into()),
    }
}

/// The lines printed once the cluster is up.
pub fn banner(plans: &[NodePlan], data_dir: &Path) -> String {
    let mut s = format!(
        "RiftKV dev cluster '{DEV_CLUSTER_NAME}' is up: {} node{}, data in {}\n\n",
        plans.len(),
        if plans.len() == 1 { "" } else { "s" },
        data_dir.display()
    );
    for p in plans {
        s.push_str(&format!(
            "  {:<7} {}   (peer {}, log {})\n",
            p.node_id,
            p.api_url(),
            p.peer_addr,
            p.log_path.display()
        ));
    }
    if let Some(first) = plans.first() {
        s.push_str(&format!("\nConsole: {}\n", console_url(first)));
        let second = plans.get(1).unwrap_or(first);
        s.push_str(&format!(
            "\nTry it:\n  curl -i -X PUT -H 'Content-Type: text/plain' --data 'hello' {}/v1/kv/demo/greeting\n  curl -i {}/v1/kv/demo/greeting\n  riftkv get demo greeting --url {}\n",
            first.api_url(),
            second.api_url(),
            second.api_url()
        ));
    }
    s.push_str("\nPress Ctrl-C to stop every node.\n");
    s
}

/// The web console of a node (CONTRACT §8).
pub fn console_url(plan: &NodePlan) -> String {
    format!("{}/ui", plan.api_url())
}

/// Last `n` lines of a log, to show why a node died.
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A started node.
struct Running {
    plan: NodePlan,
    child: Child,
    /// Set once the process has been reaped.
    exited: Option<ExitStatus>,
}

/// Every started node; dropping it kills whatever is still running, so no path leaves
/// orphans behind.
struct Cluster {
    nodes: Vec<Running>,
}

impl Cluster {
    /// Reaps exited children; returns the ones that exited since the last call.
    fn reap(&mut self) -> Vec<(NodePlan, ExitStatus)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if n.exited.is_none()
                && let Ok(Some(status)) = n.child.try_wait()
            {
                n.exited = Some(status);
                out.push((n.plan.clone(), status));
            }
        }
        out
    }

    fn live(&self) -> usize {
        self.nodes.iter().filter(|n| n.exited.is_none()).count()
    }

    fn signal_all(&self, sig: Signal) {
        for n in self.nodes.iter().filter(|n| n.exited.is_none()) {
            if let Ok(pid) = i32::try_from(n.child.id()) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
    }

    /// SIGTERM everyone, wait up to [`STOP_GRACE`], then SIGKILL the rest. A second Ctrl-C
    /// skips the wait.
    async fn stop(&mut self, mut interrupt: Option<&mut tokio::signal::unix::Signal>) {
        self.reap();
        if self.live() == 0 {
            return;
        }
        println!(
            "stopping {} node(s) (Ctrl-C again to kill them at once)...",
            self.live()
        );
        self.signal_all(Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while self.live() > 0 && tokio::time::Instant::now() < deadline {
            let second_interrupt = async {
                match interrupt.as_mut() {
                    Some(sig) => sig.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = second_interrupt => break,
                _ = tick.tick() => { self.reap(); }
            }
        }
        self.reap();
        for n in self.nodes.iter().filter(|n| n.exited.is_none()) {
            eprintln!(
                "riftkv dev: {} did not stop within {}s; killing it",
                n.plan.node_id,
                STOP_GRACE.as_secs()
            );
        }
        self.kill_all();
    }

    /// SIGKILL and reap whatever still runs.
    fn kill_all(&mut self) {
        for n in &mut self.nodes {
            if n.exited.is_none() {
                let _ = n.child.kill();
                n.exited = n.child.wait().ok();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn open_log(plan: &NodePlan) -> std::io::Result<File> {
    std::fs::create_dir_all(&plan.data_dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log_path)?;
    writeln!(
        f,
        "--- riftkv dev: starting {} at {} ---",
        plan.node_id,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )?;
    Ok(f)
}

fn spawn(exe: &Path, plan: &NodePlan) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = open_log(plan)?;
    let mut cmd = Command::new(exe);
    cmd.args(plan.server_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Own process group: the terminal's Ctrl-C reaches only the supervisor, which then
        // stops the nodes in order.
        .process_group(0);
    for var in PLANNED_ENV {
        cmd.env_remove(var);
    }
    if let Some(secret) = DEV_SECRET.get() {
        cmd.env("RIFTKV_CLUSTER_SECRET", secret);
    }
    if let Some(workers) = DEV_WORKERS.get() {
        cmd.env("RIFTKV_WORKER_THREADS", workers.to_string());
    }
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // syscalls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // If the supervisor dies without cleaning up (SIGKILL), take the node down too.
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            if nix::unistd::getppid().as_raw() as u32 != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Fails early, with a clear message, when a planned port is taken.
fn check_ports_free(plans: &[NodePlan]) -> Result<(), String> {
    for p in plans {
        for addr in [p.api_addr, p.peer_addr] {
            if let Err(e) = TcpListener::bind(addr) {
                return Err(format!(
                    "{addr} is not available for {} ({e}); is another cluster running? \
                     Pick another --base-port",
                    p.node_id
                ));
            }
        }
    }
    Ok(())
}

/// Asks one node whether it is ready.
async fn probe(http: &reqwest::Client, plan: &NodePlan, expected: usize) -> Readiness {
    let url = format!("{}/v1/admin/status", plan.api_url());
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Readiness::Unreachable("not listening yet".into()),
        Err(e) => return Readiness::Unreachable(e.to_string()),
    };
    if !resp.status().is_success() {
        return Readiness::Waiting(format!("status answered {}", resp.status()));
    }
    match resp.json::<serde_json::Value>().await {
        Ok(v) => readiness(&v, expected),
        Err(e) => Readiness::Unreachable(format!("unreadable status answer: {e}")),
    }
}

async fn health(http: &reqwest::Client, plan: &NodePlan) -> bool {
    http.get(format!("{}/health", plan.api_url()))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

fn report_death(plan: &NodePlan, status: ExitStatus) {
    eprintln!(
        "riftkv dev: {} exited unexpectedly ({status}); its log is {}",
        plan.node_id,
        plan.log_path.display()
    );
}

/// Outcome of the startup phase.
enum Startup {
    Ready,
    Interrupted,
    Failed,
}

/// The cluster secret the dev nodes share, set once by [`run`] before any node starts.
static DEV_SECRET: OnceLock<String> = OnceLock::new();

/// Request threads per dev node, set once by [`run`] unless `RIFTKV_WORKER_THREADS` is given.
static DEV_WORKERS: OnceLock<usize> = OnceLock::new();

/// Request threads for each of `nodes` nodes sharing `cores`: an equal share, at least one.
/// With one worker per core in every node, three nodes on two cores ran six runtimes' worth of
/// threads that woke and preempted each other: 0.88x the CPU per operation and 1.10x the
/// throughput with the share instead (BENCHMARKS.md, "Nodes that share a machine").
pub fn worker_share(cores: usize, nodes: u16) -> usize {
    (cores / usize::from(nodes.max(1))).max(1)
}

/// The dev cluster's secret: `<data-dir>/cluster.secret`, created on the first start with 32
/// random bytes (hex) and readable only by its owner, so other local users cannot join or
/// forge contexts, and a restart on the same data dir keeps it.
fn dev_secret(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("cluster.secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => return Ok(s.trim().to_string()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds no usable secret (under 16 characters)",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    Ok(secret)
}

pub fn run(args: DevArgs) -> ExitCode {
    // A secret given in the environment wins (and reaches the nodes unchanged).
    if std::env::var_os("RIFTKV_CLUSTER_SECRET").is_none() {
        match dev_secret(&args.data_dir) {
            Ok(secret) => {
                let _ = DEV_SECRET.set(secret);
            }
            Err(e) => {
                eprintln!(
                    "riftkv dev: cannot set up the cluster secret in {}: {e}",
                    args.data_dir.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    if std::env::var_os("RIFTKV_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let _ = DEV_WORKERS.set(worker_share(cores, args.nodes));
    }
    let restart = is_restart(&args.data_dir, args.nodes);
    let plans = match plan_cluster(args.nodes, args.base_port, &args.data_dir, restart) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("riftkv dev: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = check_ports_free(&plans) {
        eprintln!("riftkv dev: {e}");
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("riftkv dev: cannot find the riftkv binary itself: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("riftkv dev: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(supervise(
        exe,
        plans,
        args.data_dir,
        restart,
        Duration::from_secs(args.startup_timeout),
    ))
}

async fn supervise(
    exe: PathBuf,
    plans: Vec<NodePlan>,
    data_dir: PathBuf,
    restart: bool,
    startup_timeout: Duration,
) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers go in before any child exists, so an early Ctrl-C still cleans up.
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("riftkv dev: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riftkv dev: cannot set up the HTTP client: {e}");
            return ExitCode::from(2);
        }
    };

    println!(
        "{} {} node{} in {} ...",
        if restart { "restarting" } else { "starting" },
        plans.len(),
        if plans.len() == 1 { "" } else { "s" },
        data_dir.display()
    );
    let mut cluster = Cluster { nodes: Vec::new() };
    let deadline = Instant::now() + startup_timeout;
    let startup = start_all(
        &exe,
        &plans,
        restart,
        deadline,
        &http,
        &mut cluster,
        &mut interrupt,
        &mut terminate,
    )
    .await;
    match startup {
        Startup::Ready => {}
        Startup::Interrupted => {
            cluster.stop(Some(&mut interrupt)).await;
            return ExitCode::SUCCESS;
        }
        Startup::Failed => {
            cluster.stop(Some(&mut interrupt)).await;
            return ExitCode::FAILURE;
        }
    }

    print!("{}", banner(&plans, &data_dir));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                for (plan, status) in cluster.reap() {
                    report_death(&plan, status);
                }
                if cluster.live() == 0 {
                    eprintln!("riftkv dev: every node has exited");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    cluster.stop(Some(&mut interrupt)).await;
    println!("all nodes stopped");
    ExitCode::SUCCESS
}

/// Spawns the nodes and waits, within the deadline, for every one to report a settled ring.
#[allow(clippy::too_many_arguments)]
async fn start_all(
    exe: &Path,
    plans: &[NodePlan],
    restart: bool,
    deadline: Instant,
    http: &reqwest::Client,
    cluster: &mut Cluster,
    interrupt: &mut tokio::signal::unix::Signal,
    terminate: &mut tokio::signal::unix::Signal,
) -> Startup {
    let expected = plans.len();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // On a fresh start the founder comes up first so joiners find it at once.
    let first_batch = if restart { plans.len() } else { 1 };
    let mut spawned = 0;
    let mut last: Vec<Readiness> = vec![Readiness::Unreachable("not started".into()); expected];

    loop {
        while spawned < plans.len() && (spawned < first_batch || founder_up(&last, restart)) {
            let plan = &plans[spawned];
            match spawn(exe, plan) {
                Ok(child) => cluster.nodes.push(Running {
                    plan: plan.clone(),
                    child,
                    exited: None,
                }),
                Err(e) => {
                    eprintln!(
                        "riftkv dev: cannot start {} (log {}): {e}",
                        plan.node_id,
                        plan.log_path.display()
                    );
                    return Startup::Failed;
                }
            }
            spawned += 1;
            last[spawned - 1] = Readiness::Unreachable("not listening yet".into());
        }

        tokio::select! {
            _ = interrupt.recv() => return Startup::Interrupted,
            _ = terminate.recv() => return Startup::Interrupted,
            _ = tick.tick() => {}
        }

        if let Some((plan, status)) = cluster.reap().into_iter().next() {
            report_death(&plan, status);
            eprintln!(
                "--- last lines of {} ---\n{}",
                plan.log_path.display(),
                tail(&plan.log_path, 15)
            );
            return Startup::Failed;
        }

        if spawned < plans.len() {
            // Founder not up yet: only its health matters.
            if health(http, &plans[0]).await {
                last[0] = Readiness::Waiting("serving".into());
            }
        } else {
            let probes = plans.iter().map(|p| probe(http, p, expected));
            last = futures::future::join_all(probes).await;
            if last.iter().all(|r| *r == Readiness::Ready) {
                return Startup::Ready;
            }
        }

        if Instant::now() >= deadline {
            eprintln!("riftkv dev: the cluster did not settle in time; last state:");
            for (plan, state) in plans.iter().zip(&last) {
                let what = match state {
                    Readiness::Ready => "ready".to_string(),
                    Readiness::Waiting(w) => w.clone(),
                    Readiness::Unreachable(u) => u.clone(),
                };
                eprintln!(
                    "  {}: {what} (log {})",
                    plan.node_id,
                    plan.log_path.display()
                );
            }
            return Startup::Failed;
        }
    }
}

/// On a fresh start, joiners wait until the founder serves HTTP.
fn founder_up(last: &[Readiness], restart: bool) -> bool {
    restart || matches!(last.first(), Some(Readiness::Waiting(_) | Readiness::Ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fresh_plan_has_one_founder_and_joiners_through_it() {
        let plans = plan_cluster(3, 8700, Path::new("/tmp/d"), false).unwrap();
        assert_eq!(plans.len(), 3);
        for (i, p) in plans.iter().enumerate() {
            let k = i as u16 + 1;
            assert_eq!(p.index, k);
            assert_eq!(p.node_id, format!("node{k}"));
            assert_eq!(p.api_addr, local(8700 + k));
            assert_eq!(p.peer_addr, local(8800 + k));
            assert_eq!(p.data_dir, PathBuf::from(format!("/tmp/d/node{k}")));
            assert_eq!(
                p.log_path,
                PathBuf::from(format!("/tmp/d/node{k}/server.log"))
            );
        }
        assert!(plans[0].seeds.is_empty());
        assert_eq!(plans[1].seeds, vec![addr("127.0.0.1:8801")]);
        assert_eq!(plans[2].seeds, vec![addr("127.0.0.1:8801")]);
        assert_eq!(plans[0].api_url(), "http://127.0.0.1:8701");
    }

    #[test]
    fn restart_plan_seeds_every_node_with_the_others() {
        let plans = plan_cluster(3, 9000, Path::new("d"), true).unwrap();
        assert_eq!(
            plans[0].seeds,
            vec![addr("127.0.0.1:9102"), addr("127.0.0.1:9103")]
        );
        assert_eq!(
            plans[1].seeds,
            vec![addr("127.0.0.1:9101"), addr("127.0.0.1:9103")]
        );
        assert_eq!(
            plans[2].seeds,
            vec![addr("127.0.0.1:9101"), addr("127.0.0.1:9102")]
        );
        let single = plan_cluster(1, 9000, Path::new("d"), true).unwrap();
        assert!(single[0].seeds.is_empty());
    }

    #[test]
    fn plan_ports_never_collide() {
        let plans = plan_cluster(MAX_DEV_NODES, 1000, Path::new("d"), false).unwrap();
        let mut ports: Vec<u16> = plans
            .iter()
            .flat_map(|p| [p.api_addr.port(), p.peer_addr.port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 2 * MAX_DEV_NODES as usize);
    }

    #[test]
    fn plan_rejects_bad_sizes() {
        assert_eq!(
            plan_cluster(0, 8700, Path::new("d"), false),
            Err(DevError::NodeCount(0))
        );
        assert_eq!(
            plan_cluster(100, 8700, Path::new("d"), false),
            Err(DevError::NodeCount(100))
        );
        assert!(matches!(
            plan_cluster(3, 65_433, Path::new("d"), false),
            Err(DevError::PortRange { .. })
        ));
        assert!(plan_cluster(3, 65_432, Path::new("d"), false).is_ok());
        assert_eq!(
            plan_cluster(1, 0, Path::new("d"), false),
            Err(DevError::ZeroBase)
        );
    }

    #[test]
    fn nodes_sharing_a_machine_split_its_cores() {
        assert_eq!(worker_share(2, 3), 1);
        assert_eq!(worker_share(8, 3), 2);
        assert_eq!(worker_share(16, 4), 4);
        assert_eq!(worker_share(1, 1), 1);
        assert_eq!(worker_share(0, 0), 1);
    }

    #[test]
    fn server_args_follow_the_plan() {
        let plans = plan_cluster(2, 8700, Path::new("dev"), false).unwrap();
        let a: Vec<String> = plans[1]
            .server_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "server",
                "--node-id",
                "node2",
                "--api-addr",
                "127.0.0.1:8702",
                "--peer-addr",
                "127.0.0.1:8802",
                "--data-dir",
                "dev/node2",
                "--cluster-name",
                "riftkv-dev",
                "--seeds",
                "127.0.0.1:8801"
            ]
        );
        let founder: Vec<OsString> = plans[0].server_args();
        assert!(!founder.iter().any(|s| s == "--seeds"));
    }

    #[test]
    fn planned_args_are_accepted_by_the_server_config() {
        use clap::Parser;
        use riftkv_server::config::{ServerArgs, ServerConfig};
        #[derive(Parser)]
        struct P {
            #[command(subcommand)]
            c: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Server(ServerArgs),
        }
        for plan in plan_cluster(3, 8700, Path::new("dev"), true).unwrap() {
            let mut argv: Vec<OsString> = vec!["riftkv".into()];
            argv.extend(plan.server_args());
            let Sub::Server(args) = P::try_parse_from(argv).unwrap().c;
            let cfg = ServerConfig::resolve(args).unwrap();
            assert_eq!(cfg.node_id.as_str(), plan.node_id);
            assert_eq!(cfg.api_addr, plan.api_addr);
            assert_eq!(cfg.peer_addr, plan.peer_addr);
            assert_eq!(cfg.seeds, plan.seeds);
            assert_eq!(cfg.cluster_name, DEV_CLUSTER_NAME);
        }
    }

    #[test]
    fn restart_is_detected_from_node_state_not_logs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_restart(dir.path(), 3));
        let n2 = dir.path().join("node2");
        std::fs::create_dir_all(&n2).unwrap();
        std::fs::write(n2.join(LOG_FILE), "failed start").unwrap();
        assert!(!is_restart(dir.path(), 3));
        std::fs::write(n2.join("NODE_ID"), "node2").unwrap();
        assert!(is_restart(dir.path(), 3));
        assert!(!is_restart(dir.path(), 1));
    }

    #[test]
    fn readiness_needs_settled_ring_and_all_members() {
        let status = |settled: bool, members: usize| {
            serde_json::json!({
                "node_id": "node1",
                "ring_settled": settled,
                "members": (0..members).map(|i| serde_json::json!({"node_id": format!("node{i}")})).collect::<Vec<_>>(),
            })
        };
        assert_eq!(readiness(&status(true, 3), 3), Readiness::Ready);
        assert_eq!(
            readiness(&status(true, 2), 3),
            Readiness::Waiting("2/3 members, ring settled".into())
        );
        assert_eq!(
            readiness(&status(false, 3), 3),
            Readiness::Waiting("3/3 members, ring not settled".into())
        );
        assert!(matches!(
            readiness(&serde_json::json!({"members": []}), 1),
            Readiness::Unreachable(_)
        ));
    }

    #[test]
    fn banner_lists_every_node_and_examples() {
        let plans = plan_cluster(3, 8700, Path::new("./riftkv-dev"), false).unwrap();
        let b = banner(&plans, Path::new("./riftkv-dev"));
        for p in &plans {
            assert!(b.contains(&p.api_url()), "{b}");
            assert!(b.contains(&p.log_path.display().to_string()));
        }
        assert!(b.contains("Console: http://127.0.0.1:8701/ui\n"), "{b}");
        assert!(b.contains("curl -i -X PUT"));
        assert!(b.contains("http://127.0.0.1:8701/v1/kv/demo/greeting"));
        assert!(b.contains("curl -i http://127.0.0.1:8702/v1/kv/demo/greeting"));
        let one = banner(&plans[..1], Path::new("x"));
        assert!(one.contains("1 node,"));
    }

    #[test]
    fn founder_gates_joiners_only_on_fresh_start() {
        let waiting = vec![Readiness::Unreachable("x".into())];
        assert!(!founder_up(&waiting, false));
        assert!(founder_up(&waiting, true));
        assert!(founder_up(&[Readiness::Waiting("serving".into())], false));
    }

    #[test]
    fn stopping_terminates_children_and_reaps_them() {
        // A stand-in child that exits on SIGTERM, like the server does.
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let plan = plan_cluster(1, 8700, Path::new("d"), false)
            .unwrap()
            .remove(0);
        let mut cluster = Cluster {
            nodes: vec![Running {
                plan,
                child,
                exited: None,
            }],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        rt.block_on(cluster.stop(None));
        assert_eq!(cluster.live(), 0);
        assert!(
            started.elapsed() < STOP_GRACE,
            "SIGTERM should have been enough"
        );
        let status = cluster.nodes[0].exited.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }
}
