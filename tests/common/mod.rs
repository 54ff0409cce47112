//! Harness for multi-process tests: real `riftkv server` processes on a loopback address of
//! their own (127.x.y.z, so tests running in parallel never collide on ports), killed and
//! restarted for real, and always cleaned up when the test ends, passes or fails.

#![allow(dead_code)]

use base64::Engine;
use reqwest::blocking::Response;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_riftkv");

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// A loopback address no other test of this run uses.
pub fn unique_loopback() -> String {
    let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!(
        "127.{}.{}.{}",
        1 + (pid % 250),
        1 + ((pid / 250) % 250),
        1 + (n % 250)
    )
}

pub struct Server {
    pub id: String,
    pub api: String,
    pub peer: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// Extra environment of the process (e.g. libfaketime's `LD_PRELOAD` and `FAKETIME`).
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.id);
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .expect("log file");
        let child = Command::new(BIN)
            .arg("server")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn riftkv server");
        self.child = Some(child);
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct ClusterOpts {
    pub ring_size: u32,
    pub cluster_name: String,
    pub extra_args: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            ring_size: 32,
            cluster_name: "riftkv-test".into(),
            extra_args: vec![
                "--gossip-interval-ms".into(),
                "200".into(),
                "--handoff-interval-ms".into(),
                "200".into(),
            ],
        }
    }
}

pub struct Cluster {
    pub ip: String,
    pub servers: Vec<Server>,
    pub dir: tempfile::TempDir,
    pub opts: ClusterOpts,
}

impl Cluster {
    /// Starts `n` servers: node 1 founds the cluster, the others join through it.
    pub fn start(n: usize, opts: ClusterOpts) -> Cluster {
        Cluster::start_on(&unique_loopback(), n, opts)
    }

    /// As [`Cluster::start`], every server listening on `ip` (a test that must know the
    /// address first, e.g. to issue certificates for it).
    pub fn start_on(ip: &str, n: usize, opts: ClusterOpts) -> Cluster {
        let ip = ip.to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster {
            ip,
            servers: Vec::new(),
            dir,
            opts,
        };
        for _ in 0..n {
            c.add_server();
        }
        c
    }

    /// Adds and starts one more server that joins through node 1.
    pub fn add_server(&mut self) -> usize {
        let i = self.servers.len() + 1;
        let api = format!("{}:{}", self.ip, 8700 + i);
        let peer = format!("{}:{}", self.ip, 8800 + i);
        let id = format!("node{i}");
        let data_dir = self.dir.path().join(&id);
        let mut args = vec![
            "--node-id".to_string(),
            id.clone(),
            "--api-addr".into(),
            api.clone(),
            "--peer-addr".into(),
            peer.clone(),
            "--data-dir".into(),
            data_dir.to_string_lossy().into_owned(),
            "--cluster-name".into(),
            self.opts.cluster_name.clone(),
            "--ring-size".into(),
            self.opts.ring_size.to_string(),
        ];
        if i > 1 {
            args.push("--seeds".into());
            args.push(format!("{}:{}", self.ip, 8801));
        }
        args.extend(self.opts.extra_args.iter().cloned());
        let mut s = Server {
            id,
            api,
            peer,
            data_dir,
            args,
            env: Vec::new(),
            child: None,
        };
        s.start();
        self.servers.push(s);
        i
    }

    pub fn node(&mut self, i: usize) -> &mut Server {
        &mut self.servers[i - 1]
    }

    pub fn url(&self, i: usize) -> String {
        self.servers[i - 1].url()
    }

    /// Index (1-based) of the server with this node id.
    pub fn index_of(&self, node_id: &str) -> usize {
        self.servers
            .iter()
            .position(|s| s.id == node_id)
            .map(|p| p + 1)
            .unwrap_or_else(|| panic!("no server {node_id}"))
    }

    /// Waits until every running server reports `ring_settled` with `members` members.
    pub fn wait_settled(&mut self, members: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for s in self.servers.iter_mut().filter(|s| s.child.is_some()) {
                let ok = status(&s.url()).is_some_and(|st| {
                    st["ring_settled"] == Value::Bool(true)
                        && st["members"].as_array().map(|m| m.len()) == Some(members)
                });
                all &= ok;
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                let mut report = String::new();
                for s in &self.servers {
                    report.push_str(&format!(
                        "--- {} status: {:?}\n--- log tail:\n{}\n",
                        s.id,
                        status(&s.url()),
                        tail(&s.log(), 30)
                    ));
                }
                panic!("cluster did not settle within {timeout:?}\n{report}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Waits until server `observer` sees every member as reachable (`ring_settled` ignores
/// unreachable members, so a restarted node can be settled yet not routed to).
pub fn wait_all_reachable(c: &Cluster, observer: usize, timeout: Duration) {
    eventually(timeout, "every member reachable", || {
        status(&c.url(observer)).is_some_and(|s| {
            s["members"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|m| m["reachable"] == Value::Bool(true))
        })
    });
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// `GET /v1/admin/ring` of the node at `url`.
pub fn ring_of(url: &str) -> Value {
    client()
        .get(format!("{url}/v1/admin/ring"))
        .send()
        .expect("ring request")
        .json()
        .expect("ring json")
}

pub fn status(url: &str) -> Option<Value> {
    client()
        .get(format!("{url}/v1/admin/status"))
        .send()
        .ok()?
        .json()
        .ok()
}

/// Runs `riftkv server ARGS` to its exit (for configurations it must refuse): the exit code
/// and stderr.
pub fn server_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("server")
        .args(args)
        .output()
        .expect("run riftkv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Polls `f` until it returns true, panicking with `what` after `timeout`.
pub fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Percent-encodes a path segment.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- client helpers shared by the key-value tests

pub fn put(
    url: &str,
    bucket: &str,
    key: &str,
    body: &[u8],
    query: &str,
    ctx: Option<&str>,
) -> Response {
    let mut req = client()
        .put(format!("{url}/v1/kv/{}/{}{query}", seg(bucket), seg(key)))
        .header("content-type", "text/plain")
        .body(body.to_vec());
    if let Some(ctx) = ctx {
        req = req.header("x-riftkv-context", ctx);
    }
    req.send().expect("put request")
}

pub fn get_json(url: &str, bucket: &str, key: &str, query: &str) -> Response {
    client()
        .get(format!("{url}/v1/kv/{}/{}{query}", seg(bucket), seg(key)))
        .header("accept", "application/json")
        .send()
        .expect("get request")
}

pub fn values_of(v: &Value) -> BTreeSet<Vec<u8>> {
    v["siblings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["deleted"] == false)
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s["value_base64"].as_str().unwrap_or(""))
                .expect("base64")
        })
        .collect()
}

pub fn preflist(url: &str, bucket: &str, key: &str) -> (Vec<String>, Vec<String>) {
    let v: Value = client()
        .get(format!(
            "{url}/v1/admin/preflist/{}/{}",
            seg(bucket),
            seg(key)
        ))
        .send()
        .expect("preflist")
        .json()
        .expect("preflist json");
    let list = |f: &str| {
        v[f].as_array()
            .expect("node list")
            .iter()
            .map(|x| x.as_str().expect("node id").to_string())
            .collect::<Vec<_>>()
    };
    (list("primaries"), list("serving"))
}

pub fn local(url: &str, bucket: &str, key: &str) -> Option<Value> {
    let r = client()
        .get(format!("{url}/v1/admin/local/{}/{}", seg(bucket), seg(key)))
        .send()
        .ok()?;
    if r.status() == 200 {
        r.json().ok()
    } else {
        None
    }
}

pub fn hints_pending(url: &str) -> u64 {
    status(url)
        .and_then(|s| s["hints_pending"].as_u64())
        .unwrap_or(0)
}

pub fn wait_unreachable(c: &Cluster, observer: usize, ids: &[String]) {
    eventually(
        Duration::from_secs(30),
        "stopped nodes seen unreachable",
        || {
            status(&c.url(observer)).is_some_and(|s| {
                s["members"].as_array().into_iter().flatten().all(|m| {
                    let down = ids.iter().any(|i| m["node_id"] == i.as_str());
                    m["reachable"] == Value::Bool(!down)
                })
            })
        },
    );
}
