//! Rolling restart: SIGTERM one node at a time while a client writes at w=3 through another
//! node. A node going down announces it, so coordinators pick a fallback at once instead of
//! failing writes until their failure detector notices. A restarted node takes writes from
//! its first request, before it has heard from its peers.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the writer saw: acknowledged keys and failed writes (status or transport error).
#[derive(Default)]
struct Outcome {
    acked: Vec<String>,
    failed: Vec<String>,
}

fn restart(c: &mut Cluster, i: usize) {
    let code = c.node(i).terminate();
    assert_eq!(code, Some(0), "node{i} did not exit cleanly after SIGTERM");
    std::thread::sleep(Duration::from_millis(500));
    c.node(i).start();
    wait_all_reachable(c, 1, Duration::from_secs(30));
    c.wait_settled(4, Duration::from_secs(30));
    // Let the writer run against the full cluster for a while before the next node.
    std::thread::sleep(Duration::from_millis(1000));
}

/// Waits (up to `hints_within`) until no node of the 4 holds hints, then checks that every
/// key of `acked` reads back at r=2 with its own name as its value.
fn assert_read_back_after_hints(c: &Cluster, acked: &[String], hints_within: Duration) {
    eventually(hints_within, "hints delivered", || {
        (1..=4).all(|i| hints_pending(&c.url(i)) == 0)
    });
    let url = c.url(1);
    for key in acked {
        let r = get_json(&url, "rolling", key, "?r=2");
        assert_eq!(r.status(), 200, "key {key} not readable at r=2");
        let v: serde_json::Value = r.json().expect("json");
        assert!(
            values_of(&v).contains(key.as_bytes()),
            "key {key} read back {v}"
        );
    }
}

#[test]
fn sigterm_rolling_restart_fails_no_w3_write() {
    let started = Instant::now();
    let mut c = Cluster::start(4, ClusterOpts::default());
    c.wait_settled(4, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));

    let url = c.url(1);
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let writer = {
        let (stop, outcome) = (stop.clone(), outcome.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("k{i}");
                i += 1;
                let r = http
                    .put(format!("{url}/v1/kv/rolling/{key}?w=3&timeout=2000"))
                    .header("content-type", "text/plain")
                    .body(key.clone().into_bytes())
                    .send();
                let mut o = outcome.lock().unwrap();
                match r {
                    Ok(r) if r.status().is_success() => o.acked.push(key),
                    Ok(r) => {
                        let code = r.status();
                        let body = r.text().unwrap_or_default();
                        o.failed.push(format!("{key}: {code} {body}"))
                    }
                    Err(e) => o.failed.push(format!("{key}: {e}")),
                }
                drop(o);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    std::thread::sleep(Duration::from_millis(1000));
    restart(&mut c, 4);
    restart(&mut c, 3);
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");

    let o = outcome.lock().unwrap();
    eprintln!(
        "rolling restart: {} writes acknowledged, {} failed",
        o.acked.len(),
        o.failed.len()
    );
    assert!(o.acked.len() > 50, "too few writes: {}", o.acked.len());
    if !o.failed.is_empty() {
        for i in [1, 3, 4] {
            eprintln!("--- node{i} log tail:\n{}", tail(&c.node(i).log(), 40));
        }
    }
    assert!(
        o.failed.is_empty(),
        "{} of {} writes failed, first: {:?}",
        o.failed.len(),
        o.failed.len() + o.acked.len(),
        &o.failed[..o.failed.len().min(5)]
    );
    for log in [c.node(3).log(), c.node(4).log()] {
        assert!(
            log.contains("announced going down to 3 of 3 members"),
            "{}",
            tail(&log, 20)
        );
    }

    // Nodes 1 and 2 ran throughout and took both notices.
    for i in [1, 2] {
        let text = client()
            .get(format!("{}/metrics", c.url(i)))
            .send()
            .expect("metrics")
            .text()
            .expect("metrics text");
        assert!(
            text.contains("riftkv_going_down_received_total 2"),
            "node{i}: {}",
            text.lines()
                .filter(|l| l.contains("going_down"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Hints written while a node was away reach it; then every acknowledged key reads back.
    assert_read_back_after_hints(&c, &o.acked, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

/// What one client thread sent to a restarting node.
#[derive(Default)]
struct Sent {
    /// Keys whose write was acknowledged.
    acked: Vec<String>,
    /// Requests answered with anything else (status and body), and when.
    failed: Vec<String>,
    reads: usize,
}

/// Requests sent to a just-restarted node from the moment its API accepts, by `clients`
/// threads, each until it has `per_client` answers or `budget` has passed: even threads write
/// keys of their own (`prefix`), odd ones read the keys of `before` (written with their own
/// name as value before the restart) at r=2. A connection refused while the process starts is
/// retried with the same request.
fn requests_to_starting_node(
    url: &str,
    prefix: &str,
    before: &[String],
    clients: usize,
    per_client: usize,
    budget: Duration,
) -> Sent {
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (url, prefix, before) = (url.to_string(), prefix.to_string(), before.to_vec());
            std::thread::spawn(move || {
                let http = client();
                let began = Instant::now();
                let mut sent = Sent::default();
                let mut j = 0;
                while j < per_client && began.elapsed() < budget {
                    let (key, r) = if t % 2 == 0 {
                        let key = format!("{prefix}-{t}-{j}");
                        let r = http
                            .put(format!("{url}/v1/kv/rolling/{key}?w=2&timeout=5000"))
                            .header("content-type", "text/plain")
                            .body(key.clone().into_bytes())
                            .send();
                        (key, r)
                    } else {
                        let key = before[j % before.len()].clone();
                        let r = http
                            .get(format!("{url}/v1/kv/rolling/{key}?r=2&timeout=5000"))
                            .send();
                        (key, r)
                    };
                    let at = began.elapsed();
                    match r {
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        Ok(r) if r.status().is_success() => {
                            if t % 2 == 0 {
                                sent.acked.push(key);
                            } else {
                                let body = r.bytes().unwrap_or_default();
                                if body != key.as_bytes() {
                                    sent.failed.push(format!("read {key} at {at:?}: {body:?}"));
                                }
                                sent.reads += 1;
                            }
                        }
                        Ok(r) => {
                            let code = r.status();
                            let body = r.text().unwrap_or_default();
                            sent.failed
                                .push(format!("{key} via {url} at {at:?}: {code} {body}"));
                        }
                    }
                    j += 1;
                }
                sent
            })
        })
        .collect();
    let mut all = Sent::default();
    for t in threads {
        let s = t.join().expect("client thread");
        all.acked.extend(s.acked);
        all.failed.extend(s.failed);
        all.reads += s.reads;
    }
    all
}

/// A restarted node coordinates writes and reads (and writes its peers forward to it) from its
/// first request: the peers it has not heard from yet in this run are asked, not refused, so
/// a client that sends to every node sees no 503 while only the restarting node was away.
#[test]
fn a_restarted_node_serves_before_it_has_heard_from_its_peers() {
    let started = Instant::now();
    let mut c = Cluster::start(4, ClusterOpts::default());
    c.wait_settled(4, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));
    let before: Vec<String> = (0..20).map(|k| format!("before-{k}")).collect();
    for key in &before {
        let r = put(&c.url(1), "rolling", key, key.as_bytes(), "?w=3", None);
        assert!(r.status().is_success(), "write {key}: {}", r.status());
    }

    let mut sent = Sent::default();
    for (round, i) in [2usize, 3, 4, 2].into_iter().enumerate() {
        assert_eq!(c.node(i).terminate(), Some(0), "node{i} exit after SIGTERM");
        c.node(i).start();
        let s = requests_to_starting_node(
            &c.url(i),
            &format!("restart{round}"),
            &before,
            4,
            20,
            Duration::from_secs(20),
        );
        sent.acked.extend(s.acked);
        sent.failed.extend(s.failed);
        sent.reads += s.reads;
        wait_all_reachable(&c, 1, Duration::from_secs(30));
        c.wait_settled(4, Duration::from_secs(30));
        let url = c.url(i);
        eventually(Duration::from_secs(60), "the restarted node ready", || {
            client()
                .get(format!("{url}/ready"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
    }
    eprintln!(
        "requests to restarting nodes: {} writes acknowledged, {} reads answered, {} failed",
        sent.acked.len(),
        sent.reads,
        sent.failed.len()
    );
    for f in &sent.failed {
        eprintln!("failed: {f}");
    }
    assert!(
        sent.failed.is_empty(),
        "{} requests to a restarting node failed, first: {:?}",
        sent.failed.len(),
        &sent.failed[..sent.failed.len().min(5)]
    );
    assert!(
        sent.acked.len() >= 40,
        "too few writes: {}",
        sent.acked.len()
    );

    // What the restarted nodes acknowledged reads back once hints are delivered.
    assert_read_back_after_hints(&c, &sent.acked, Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "took {:?}",
        started.elapsed()
    );
}

/// With `--shutdown-drain-ms`, a node stopping on SIGTERM first tells its members, then keeps
/// serving clients for the window while `GET /ready` answers 503 `stopping` (a load balancer
/// that follows `/ready` moves clients away before any connection is refused), then exits.
#[test]
fn a_draining_node_says_so_on_ready_and_keeps_serving() {
    const DRAIN: Duration = Duration::from_secs(3);
    let mut opts = ClusterOpts::default();
    opts.extra_args.extend([
        "--shutdown-drain-ms".to_string(),
        DRAIN.as_millis().to_string(),
    ]);
    let mut c = Cluster::start(3, opts);
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));
    let url = c.url(3);
    let ready = |url: &str| {
        client()
            .get(format!("{url}/ready"))
            .send()
            .map(|r| {
                let code = r.status().as_u16();
                (code, r.text().unwrap_or_default())
            })
            .unwrap_or((0, String::new()))
    };
    assert_eq!(ready(&url).0, 200);

    let pid = c
        .node(3)
        .child
        .as_ref()
        .map(|ch| ch.id())
        .expect("node3 runs");
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    eventually(
        Duration::from_secs(2),
        "/ready to answer 503 stopping",
        || {
            let (code, body) = ready(&url);
            code == 503 && body.contains("\"stopping\"")
        },
    );
    // Still served within the window, at w=2 and r=2.
    let mut served = 0;
    while signalled.elapsed() < DRAIN - Duration::from_millis(1000) {
        let key = format!("drain-{served}");
        let r = put(&url, "drain", &key, key.as_bytes(), "?w=2", None);
        assert!(r.status().is_success(), "{key}: {}", r.status());
        let r = get_json(&url, "drain", &key, "?r=2");
        assert_eq!(r.status(), 200, "{key}");
        served += 1;
    }
    assert!(served > 0);
    eventually(Duration::from_secs(20), "node3 to exit", || {
        !c.node(3).is_running()
    });
    assert!(
        signalled.elapsed() >= DRAIN,
        "exited {:?} after SIGTERM, before its drain window ended",
        signalled.elapsed()
    );
    let log = c.node(3).log();
    assert!(
        log.contains("draining: /ready answers 503 stopping"),
        "{}",
        tail(&log, 20)
    );
}
