//! The database under test: one real `riftkv server` per namespace, started, killed, paused,
//! restarted and re-clocked by the nemesis. Every process is started from the main thread
//! with a parent-death signal, so if the harness itself is killed the nodes die with it.
//!
//! Clock faults use libfaketime: with the clock nemesis on, every node runs with
//! `LD_PRELOAD=libfaketimeMT.so.1` and `FAKETIME=<offset>`; a bump restarts the node under a
//! new offset (and the heal restarts it at offset zero). Restarting, rather than changing the
//! offset live, keeps the offset fixed for the life of a process, which is what a real clock
//! step looks like to CLOCK_MONOTONIC users (libfaketime would otherwise move the monotonic
//! clock too, and live re-reading of the offset costs a file read per clock call).

use crate::hosts::{node_ip, ns_name};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use riftkv_client::{ClientBuilder, Method, blocking};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Client API port of every node (each has its own address).
pub const API_PORT: u16 = 8700;
/// Inter-node port of every node.
pub const PEER_PORT: u16 = 8800;
/// Cluster name of the test cluster.
pub const CLUSTER_NAME: &str = "rkvj";
/// Shared secret of the test cluster (the nodes authenticate each other with it).
pub const CLUSTER_SECRET: &str = "riftkv-jepsen-test-cluster-secret";
/// libfaketime's multithreaded preload library on Debian.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Why a node could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start {node}: {source}")]
    Spawn {
        node: String,
        source: std::io::Error,
    },
    #[error("cannot open the log of {node} at {path}: {source}")]
    Log {
        node: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cluster did not settle within {secs}s: {state}")]
    NotSettled { secs: u64, state: String },
    #[error("{node} exited during startup ({status}); last log lines:\n{tail}")]
    Died {
        node: String,
        status: String,
        tail: String,
    },
    #[error("cannot wipe the data dir of {node} ({path}): {source}")]
    Wipe {
        node: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{node} refused the corrupt request: {reason}")]
    Corrupt { node: String, reason: String },
    #[error("interrupted")]
    Interrupted,
}

/// What a node answered to a corrupt request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Damage {
    pub matched: u64,
    pub damaged: u64,
}

/// How the nodes are run.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub riftkv_bin: PathBuf,
    /// Parent of every node's data directory.
    pub data_root: PathBuf,
    pub ring_size: u32,
    pub gossip_interval_ms: u64,
    pub handoff_interval_ms: u64,
    /// Anti-entropy exchange period; 0 leaves the server's default.
    pub aae_interval_ms: u64,
    /// Run nodes under libfaketime (needed by the clock nemesis).
    pub faketime: bool,
    /// Test-only planted bug: fraction of writes each node drops (RIFTKV_FAULT_DROP_WRITES).
    pub drop_writes: Option<f64>,
    /// Run nodes in the power-loss storage mode (RIFTKV_FAULT_POWERLOSS=1; a fault-injection
    /// build honours it, any other ignores it).
    pub powerloss: bool,
}

/// Environment switch of riftkv's power-loss storage mode.
pub const POWERLOSS_ENV: &str = "RIFTKV_FAULT_POWERLOSS";
/// The test-only route behind the corrupt nemesis (a fault-injection build only).
pub const CORRUPT_PATH: &str = "/v1/admin/fault/corrupt";

/// What a node is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Paused,
    Killed,
}

/// One node of the cluster.
pub struct NodeProc {
    pub index: usize,
    pub id: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    pub state: NodeState,
    pub clock_offset: i64,
    /// Started at least once (restarts seed through every other node).
    started: bool,
}

impl NodeProc {
    pub fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }
}

/// REST base URL of node `i`.
pub fn api_url(i: usize) -> String {
    format!("http://{}:{API_PORT}", node_ip(i))
}

/// Name of node `i`.
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// The seeds of node `i` (1-based indexes). At first start n1 founds and the others join
/// through it. Any later start (after a kill, a wipe, a power loss) lists every other node,
/// the ones running now first: a node whose data dir was wiped has no ring of its own and
/// can come back only through a live member.
pub fn seed_order(i: usize, nodes: usize, running: &[usize], restart: bool) -> Vec<usize> {
    if !restart {
        return if i == 1 { Vec::new() } else { vec![1] };
    }
    let others = (1..=nodes).filter(|&j| j != i);
    let (mut live, down): (Vec<usize>, Vec<usize>) = others.partition(|j| running.contains(j));
    live.extend(down);
    live
}

/// The `riftkv server` arguments of node `i`, joining through `seeds` (node indexes).
pub fn server_args(i: usize, opts: &NodeOptions, seeds: &[usize]) -> Vec<String> {
    let ip = node_ip(i);
    let mut a = vec![
        "server".to_string(),
        "--node-id".into(),
        node_id(i),
        "--api-addr".into(),
        format!("{ip}:{API_PORT}"),
        "--peer-addr".into(),
        format!("{ip}:{PEER_PORT}"),
        "--data-dir".into(),
        opts.data_root.join(node_id(i)).display().to_string(),
        "--cluster-name".into(),
        CLUSTER_NAME.into(),
        "--ring-size".into(),
        opts.ring_size.to_string(),
        "--gossip-interval-ms".into(),
        opts.gossip_interval_ms.to_string(),
        "--handoff-interval-ms".into(),
        opts.handoff_interval_ms.to_string(),
        // The API listens off loopback (the nodes' own addresses): an open API on purpose, so
        // the harness's clients need no tokens.
        "--auth".into(),
        "off".into(),
    ];
    if opts.aae_interval_ms > 0 {
        a.push("--aae-interval-ms".into());
        a.push(opts.aae_interval_ms.to_string());
    }
    if !seeds.is_empty() {
        a.push("--seeds".into());
        a.push(
            seeds
                .iter()
                .map(|&j| format!("{}:{PEER_PORT}", node_ip(j)))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    a
}

/// The `FAKETIME` value for an offset in seconds.
pub fn faketime_spec(offset_secs: i64) -> String {
    format!("{offset_secs:+}")
}

/// Last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The nodes of the run. Dropping it kills every node.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    opts: NodeOptions,
    http: blocking::Client,
}

impl Cluster {
    pub fn new(count: usize, opts: NodeOptions) -> Result<Cluster, riftkv_client::Error> {
        let http = ClientBuilder::new(&api_url(1))
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_millis(500))
            .build_blocking()?;
        let nodes = (1..=count)
            .map(|i| {
                let data_dir = opts.data_root.join(node_id(i));
                NodeProc {
                    index: i,
                    id: node_id(i),
                    log_path: opts.data_root.join(format!("{}.log", node_id(i))),
                    data_dir,
                    child: None,
                    state: NodeState::Killed,
                    clock_offset: 0,
                    started: false,
                }
            })
            .collect();
        Ok(Cluster { nodes, opts, http })
    }

    fn node_mut(&mut self, i: usize) -> Option<&mut NodeProc> {
        self.nodes.get_mut(i.wrapping_sub(1))
    }

    /// Starts node `i` in its namespace. Must run on the main thread (see the module doc).
    pub fn start(&mut self, i: usize) -> Result<(), ClusterError> {
        let count = self.nodes.len();
        let opts = self.opts.clone();
        let running: Vec<usize> = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Running)
            .map(|n| n.index)
            .collect();
        let Some(n) = self.node_mut(i) else {
            return Ok(());
        };
        if n.state != NodeState::Killed {
            return Ok(());
        }
        let seeds = seed_order(i, count, &running, n.started);
        let log = open_log(n)?;
        let ns_path = format!("/run/netns/{}", ns_name(i));
        let ns = File::open(&ns_path).map_err(|source| ClusterError::Spawn {
            node: n.id.clone(),
            source,
        })?;
        let mut cmd = Command::new(&opts.riftkv_bin);
        cmd.args(server_args(i, &opts, &seeds))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| ClusterError::Spawn {
                node: n.id.clone(),
                source,
            })?)
            .stderr(log);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RIFTKV_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "warn,riftkv=info")
            .env("RIFTKV_CLUSTER_SECRET", CLUSTER_SECRET);
        if let Some(f) = opts.drop_writes {
            cmd.env("RIFTKV_FAULT_DROP_WRITES", f.to_string());
        }
        if opts.powerloss {
            cmd.env(POWERLOSS_ENV, "1");
        }
        if opts.faketime {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", faketime_spec(n.clock_offset));
        }
        spawn_in_namespace(&mut cmd, ns).map_err(|source| ClusterError::Spawn {
            node: n.id.clone(),
            source,
        })?;
        let child = cmd.spawn().map_err(|source| ClusterError::Spawn {
            node: n.id.clone(),
            source,
        })?;
        n.child = Some(child);
        n.state = NodeState::Running;
        n.started = true;
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(n) = self.node_mut(i)
            && let Some(mut c) = n.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
            n.state = NodeState::Killed;
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, i: usize, grace: Duration) {
        if let Some(n) = self.node_mut(i)
            && let Some(mut c) = n.child.take()
        {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            n.state = NodeState::Killed;
        }
    }

    /// SIGKILL, then delete the node's whole data dir (its log lives outside it): the disk
    /// was lost. The next start finds an empty dir and rejoins through the live members.
    pub fn wipe(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        let Some(n) = self.node_mut(i) else {
            return Ok(());
        };
        match std::fs::remove_dir_all(&n.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ClusterError::Wipe {
                node: n.id.clone(),
                path: n.data_dir.clone(),
                source,
            }),
        }
    }

    /// Asks node `i` to damage `fraction` of its stored records of `bucket` (the test-only
    /// route of a fault-injection build).
    pub fn corrupt(&self, i: usize, bucket: &str, fraction: f64) -> Result<Damage, ClusterError> {
        let fail = |reason: String| ClusterError::Corrupt {
            node: node_id(i),
            reason,
        };
        let query = [
            ("bucket", bucket.to_string()),
            ("fraction", fraction.to_string()),
        ];
        let node = self.http.at(&api_url(i)).map_err(|e| fail(e.to_string()))?;
        let req = node
            .endpoint()
            .request(Method::POST, CORRUPT_PATH, &query)
            .map_err(|e| fail(e.to_string()))?
            .wait(Some(Duration::from_secs(30)));
        let resp = node.execute(req).map_err(|e| fail(e.to_string()))?;
        if !resp.is_success() {
            let body = String::from_utf8_lossy(&resp.body);
            return Err(fail(format!("{}: {}", resp.status, body.trim())));
        }
        serde_json::from_slice::<Damage>(&resp.body)
            .map_err(|e| fail(format!("unreadable answer: {e}")))
    }

    /// Whether node `i` runs a fault-injection build: it has the corrupt route, probed with a
    /// request that damages nothing. `None` when the answer says neither.
    pub fn is_fault_build(&self, i: usize, bucket: &str) -> Option<bool> {
        let node = self.http.at(&api_url(i)).ok()?;
        let query = [
            ("bucket", bucket.to_string()),
            ("fraction", "0".to_string()),
        ];
        let req = node
            .endpoint()
            .request(Method::POST, CORRUPT_PATH, &query)
            .ok()?;
        match node.execute(req).ok()?.status {
            200 => Some(true),
            404 => Some(false),
            _ => None,
        }
    }

    pub fn pause(&mut self, i: usize) {
        if let Some(n) = self.node_mut(i)
            && n.state == NodeState::Running
            && let Some(pid) = n.pid()
        {
            let _ = kill(pid, Signal::SIGSTOP);
            n.state = NodeState::Paused;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(n) = self.node_mut(i)
            && n.state == NodeState::Paused
            && let Some(pid) = n.pid()
        {
            let _ = kill(pid, Signal::SIGCONT);
            n.state = NodeState::Running;
        }
    }

    /// Restarts node `i` (gracefully) under a new clock offset.
    pub fn set_clock(&mut self, i: usize, offset: i64) -> Result<(), ClusterError> {
        if let Some(n) = self.node_mut(i) {
            if n.clock_offset == offset && n.state == NodeState::Running {
                return Ok(());
            }
            n.clock_offset = offset;
        }
        self.stop(i, Duration::from_secs(5));
        self.start(i)
    }

    /// Nodes that exited on their own (not by the nemesis); they are marked killed.
    pub fn reap_crashed(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                out.push((n.index, status.to_string()));
                n.child = None;
                n.state = NodeState::Killed;
            }
        }
        out
    }

    /// Every node back to normal: resumed, restarted, clocks at zero.
    pub fn heal_all(&mut self) -> Result<(), ClusterError> {
        self.reap_crashed();
        for i in 1..=self.nodes.len() {
            self.resume(i);
            let offset = self.nodes[i - 1].clock_offset;
            if offset != 0 {
                self.set_clock(i, 0)?;
            }
            self.start(i)?;
        }
        Ok(())
    }

    /// `/v1/admin/status` of node `i`, if it answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        self.http.at(&api_url(i)).ok()?.status().ok()
    }

    /// Starts every node (the founder first) and waits until each reports a settled ring with
    /// every member; `stop` aborts the wait.
    pub fn start_all(
        &mut self,
        timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        self.start(1)?;
        // Joiners need the founder's peer port; its API answering is a good enough sign.
        while self.status(1).is_none() {
            self.check_alive()?;
            if stop() {
                return Err(ClusterError::Interrupted);
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotSettled {
                    secs: timeout.as_secs(),
                    state: "the founder n1 never answered".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for i in 2..=self.nodes.len() {
            self.start(i)?;
        }
        self.wait_settled(deadline, stop)
    }

    fn check_alive(&mut self) -> Result<(), ClusterError> {
        if let Some((i, status)) = self.reap_crashed().into_iter().next() {
            let n = &self.nodes[i - 1];
            return Err(ClusterError::Died {
                node: n.id.clone(),
                status,
                tail: tail(&n.log_path, 15),
            });
        }
        Ok(())
    }

    /// Waits until every node reports `ring_settled` with all members valid.
    pub fn wait_settled(
        &mut self,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), ClusterError> {
        let expected = self.nodes.len();
        let start = Instant::now();
        loop {
            self.check_alive()?;
            let states: Vec<String> = (1..=expected)
                .map(|i| match self.status(i) {
                    Some(s) => settled_state(&s, expected),
                    None => "no answer".into(),
                })
                .collect();
            if states.iter().all(|s| s == "settled") {
                return Ok(());
            }
            if stop() {
                return Err(ClusterError::Interrupted);
            }
            if Instant::now() > deadline {
                let state = states
                    .iter()
                    .enumerate()
                    .map(|(k, s)| format!("n{}: {s}", k + 1))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ClusterError::NotSettled {
                    secs: deadline.saturating_duration_since(start).as_secs(),
                    state,
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after a short grace).
    pub fn stop_all(&mut self) {
        for n in &self.nodes {
            if let Some(pid) = n.pid() {
                let _ = kill(pid, Signal::SIGCONT);
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        for i in 1..=self.nodes.len() {
            self.stop(i, Duration::from_secs(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// "settled", or why not, from a `/v1/admin/status` answer.
pub fn settled_state(status: &serde_json::Value, expected: usize) -> String {
    let settled = status.get("ring_settled").and_then(|v| v.as_bool());
    let members = status.get("members").and_then(|v| v.as_array());
    match (settled, members) {
        (Some(true), Some(m)) if m.len() == expected => "settled".into(),
        (Some(s), Some(m)) => format!(
            "{}/{expected} members, ring {}",
            m.len(),
            if s { "settled" } else { "not settled" }
        ),
        _ => "status lacks ring_settled or members".into(),
    }
}

fn open_log(n: &NodeProc) -> Result<File, ClusterError> {
    let err = |source| ClusterError::Log {
        node: n.id.clone(),
        path: n.log_path.clone(),
        source,
    };
    std::fs::create_dir_all(&n.data_dir).map_err(err)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log_path)
        .map_err(err)?;
    writeln!(
        f,
        "--- riftkv-jepsen: starting {} (clock offset {:+}s) ---",
        n.id, n.clock_offset
    )
    .map_err(err)?;
    Ok(f)
}

/// Makes `cmd` start inside the network namespace `ns`, in its own process group, and die
/// with the thread that spawned it.
fn spawn_in_namespace(cmd: &mut Command, ns: File) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
    // syscalls (setns, prctl, getppid, _exit). `ns` is moved in and stays open until exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = ns.as_raw_fd();
            if nix::libc::setns(fd, nix::libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if nix::unistd::getppid().as_raw() as u32 != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts() -> NodeOptions {
        NodeOptions {
            riftkv_bin: "/bin/riftkv".into(),
            data_root: "/tmp/rkvj-data".into(),
            ring_size: 64,
            gossip_interval_ms: 300,
            handoff_interval_ms: 300,
            aae_interval_ms: 0,
            faketime: false,
            drop_writes: None,
            powerloss: false,
        }
    }

    #[test]
    fn founder_has_no_seeds_and_restarts_seed_through_everyone() {
        assert!(seed_order(1, 3, &[], false).is_empty());
        assert_eq!(seed_order(3, 3, &[1, 2], false), vec![1]);
        let a = server_args(1, &opts(), &[]);
        assert!(!a.contains(&"--seeds".to_string()));
        assert!(a.contains(&"10.77.0.1:8700".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "--auth" && w[1] == "off"));
        assert!(a.contains(&"/tmp/rkvj-data/n1".to_string()));
        let b = server_args(2, &opts(), &seed_order(2, 3, &[1], false));
        assert_eq!(b.last().unwrap(), "10.77.0.1:8800");
        let c = server_args(2, &opts(), &seed_order(2, 3, &[1, 3], true));
        assert_eq!(c.last().unwrap(), "10.77.0.1:8800,10.77.0.3:8800");
        assert!(!c.contains(&"--aae-interval-ms".to_string()));
        let o = NodeOptions {
            aae_interval_ms: 500,
            ..opts()
        };
        let d = server_args(3, &o, &[1]);
        let at = d.iter().position(|x| x == "--aae-interval-ms").unwrap();
        assert_eq!(d[at + 1], "500");
        assert_eq!(api_url(4), "http://10.77.0.4:8700");
    }

    #[test]
    fn a_restarted_node_seeds_through_live_members_first_never_itself() {
        // n1 (the founder) was wiped while n3 is down: n2, n4, n5 come first, n3 last.
        assert_eq!(seed_order(1, 5, &[2, 4, 5], true), vec![2, 4, 5, 3]);
        assert_eq!(seed_order(4, 5, &[1, 2, 3, 5], true), vec![1, 2, 3, 5]);
        for i in 1..=5 {
            assert!(!seed_order(i, 5, &[1, 2, 3, 4, 5], true).contains(&i));
            assert_eq!(seed_order(i, 5, &[], true).len(), 4);
        }
    }

    #[test]
    fn faketime_offsets_are_signed() {
        assert_eq!(faketime_spec(0), "+0");
        assert_eq!(faketime_spec(90), "+90");
        assert_eq!(faketime_spec(-30), "-30");
    }

    #[test]
    fn settled_needs_every_member() {
        let s = json!({"ring_settled": true, "members": [1, 2, 3]});
        assert_eq!(settled_state(&s, 3), "settled");
        assert_eq!(settled_state(&s, 5), "3/5 members, ring settled");
        let s = json!({"ring_settled": false, "members": [1]});
        assert_eq!(settled_state(&s, 1), "1/1 members, ring not settled");
        assert!(settled_state(&json!({}), 1).contains("lacks"));
    }
}
