//! Failure detection under load, with real processes: a long gossip interval and bursty
//! traffic must not make a node judge its healthy peers dead, and neither must a stall of
//! the whole machine (every node SIGSTOPped together, then resumed).

mod common;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// One request's outcome: None when it succeeded, else what the client saw and how fast.
fn outcome(r: reqwest::Result<reqwest::blocking::Response>, started: Instant) -> Option<String> {
    let ms = started.elapsed().as_millis();
    match r {
        Ok(r) if r.status().is_success() || r.status() == 404 => None,
        Ok(r) => {
            let code = r.status();
            Some(format!(
                "{code} after {ms} ms: {}",
                r.text().unwrap_or_default()
            ))
        }
        Err(e) => Some(format!("after {ms} ms: {e}")),
    }
}

/// A write then a read of `key` through `url`; the failures seen.
fn write_read(http: &reqwest::blocking::Client, url: &str, key: &str) -> Vec<String> {
    let mut failed = Vec::new();
    let started = Instant::now();
    let r = http
        .put(format!("{url}/v1/kv/fd/{key}?timeout=3000"))
        .header("content-type", "text/plain")
        .body(key.to_string())
        .send();
    failed.extend(outcome(r, started).map(|e| format!("put {key} via {url}: {e}")));
    let started = Instant::now();
    let r = http
        .get(format!("{url}/v1/kv/fd/{key}?timeout=3000"))
        .send();
    failed.extend(outcome(r, started).map(|e| format!("get {key} via {url}: {e}")));
    failed
}

fn new_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

fn opts(gossip_ms: u64) -> ClusterOpts {
    ClusterOpts {
        extra_args: vec![
            "--gossip-interval-ms".into(),
            gossip_ms.to_string(),
            "--handoff-interval-ms".into(),
            "200".into(),
        ],
        ..ClusterOpts::default()
    }
}

/// Fails the test with the first failures and the nodes' log tails, if any request failed.
fn assert_none_failed(c: &Cluster, failed: &[String], sent: usize) {
    let logs: String = c
        .servers
        .iter()
        .map(|s| format!("--- {} log tail:\n{}\n", s.id, tail(&s.log(), 15)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed, first: {:#?}\n{logs}",
        failed.len(),
        &failed[..failed.len().min(5)],
    );
}

/// With heartbeats 3 s apart, a client that sends bursts of requests with pauses between
/// them teaches a naive detector that its peers answer every few milliseconds; the first
/// pause then looks like a crash. Every request must succeed.
#[test]
fn long_gossip_interval_and_bursty_load_fail_no_request() {
    let mut c = Cluster::start(3, opts(3000));
    c.wait_settled(3, Duration::from_secs(90));
    wait_all_reachable(&c, 1, Duration::from_secs(30));
    let http = new_client();
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let mut failed = Vec::new();
    let mut done = 0;
    let until = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    while Instant::now() < until {
        for i in 0..30 {
            let url = &urls[i % 3];
            failed.extend(write_read(&http, url, &format!("r{round}-{i}")));
            done += 2;
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert_none_failed(&c, &failed, done);
}

fn signal_all(c: &Cluster, sig: Signal) {
    for s in &c.servers {
        let pid = s.child.as_ref().expect("running").id();
        kill(Pid::from_raw(pid as i32), sig).expect("signal");
    }
}

/// Sends SIGCONT to every node even if the test fails while they are stopped.
struct Resume<'a>(&'a Cluster);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        for s in &self.0.servers {
            if let Some(child) = &s.child {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            }
        }
    }
}

/// The whole machine stalls for 2 s (every node stopped together): on resume, every node
/// has been silent for the others for the stall's length, yet all are alive. Requests sent
/// right after the resume must be served, not refused at once for want of replicas.
#[test]
fn a_two_second_stall_of_every_node_refuses_nothing_after_resume() {
    let mut c = Cluster::start(3, opts(1000));
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let mut failed = Vec::new();
    let mut sent = 0;
    for stall in 0..2 {
        // Load right up to the stall, so peers were last heard from milliseconds apart.
        let http = new_client();
        for i in 0..60 {
            failed.extend(write_read(&http, &urls[i % 3], &format!("s{stall}-{i}")));
            sent += 2;
        }
        {
            let _resume = Resume(&c);
            signal_all(&c, Signal::SIGSTOP);
            std::thread::sleep(Duration::from_secs(2));
        }
        // Right after the resume: every node at once, writes and reads.
        let threads: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(n, url)| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let http = new_client();
                    (0..5)
                        .flat_map(|i| write_read(&http, &url, &format!("after{stall}-{n}-{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            failed.extend(t.join().expect("client thread"));
            sent += 10;
        }
    }
    assert_none_failed(&c, &failed, sent);
}

/// A node restarted while its peers run answers as soon as it is ready, even with heartbeats
/// 3 s apart: it greets every peer when it starts, and the answers count as heartbeats, so it
/// never routes around healthy peers it has not had a heartbeat from yet.
#[test]
fn a_restarted_node_serves_before_its_first_heartbeat() {
    let mut c = Cluster::start(3, opts(3_000));
    c.wait_settled(3, Duration::from_secs(60));
    let http = new_client();
    let mut failed = Vec::new();
    let mut sent = 0;
    for round in 0..3 {
        c.node(1).kill();
        c.node(1).start();
        let url = c.url(1);
        eventually(Duration::from_secs(30), "node 1 ready", || {
            http.get(format!("{url}/ready"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        for i in 0..5 {
            failed.extend(write_read(&http, &url, &format!("r{round}-{i}")));
            sent += 2;
        }
    }
    assert_none_failed(&c, &failed, sent);
}
