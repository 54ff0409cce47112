//! Replacing a dead node: three nodes hold acknowledged writes, one dies for good, a fresh
//! node joins and takes its place (`riftkv admin replace`). The data reaches the new node from
//! the surviving replicas, paced by the transfer byte limit, across a crash of the new node
//! and a restart of a source in the middle of the move; then every acknowledged write reads
//! back and the new node owns exactly the dead node's partitions.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const BUCKET: &str = "replace";
/// Values of about 1 KiB, so the move takes seconds at the byte limit below.
const VALUE_BYTES: usize = 1000;
/// The transfer limit of every node: slow enough to restart nodes while partitions move.
const LIMIT: &str = "400000";

fn value_of(key: &str) -> Vec<u8> {
    key.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(VALUE_BYTES)
        .collect()
}

/// Writes `keys` at w=2 through `url`; returns those acknowledged.
fn write(url: &str, keys: impl Iterator<Item = String>) -> Vec<String> {
    keys.filter(|k| {
        put(url, BUCKET, k, &value_of(k), "?w=2", None)
            .status()
            .is_success()
    })
    .collect()
}

fn partitions_of(ring: &Value, node: &str) -> BTreeSet<u64> {
    ring["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["owner"] == node)
        .map(|p| p["id"].as_u64().expect("partition id"))
        .collect()
}

/// The `transfers` object of a node's status, while a ring change is pending.
fn transfers(url: &str) -> Option<Value> {
    status(url).and_then(|s| s.get("transfers").cloned())
}

fn done_of(t: &Value) -> (u64, u64) {
    (
        t["partitions_done"].as_u64().unwrap_or(0),
        t["partitions_total"].as_u64().unwrap_or(0),
    )
}

#[test]
fn a_fresh_node_replaces_a_dead_one_and_gets_exactly_its_data() {
    let mut opts = ClusterOpts::default();
    opts.extra_args
        .extend(["--transfer-max-bytes-per-sec".to_string(), LIMIT.into()]);
    let mut c = Cluster::start(3, opts);
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));
    let url = c.url(1);

    let mut acked = write(&url, (0..2000).map(|i| format!("k{i:05}")));
    assert_eq!(
        acked.len(),
        2000,
        "every write is acknowledged while all run"
    );

    // node2 dies for good; writes go on at w=2 with the two survivors.
    c.node(2).kill();
    wait_unreachable(&c, 1, &["node2".to_string()]);
    acked.extend(write(&url, (2000..2500).map(|i| format!("k{i:05}"))));
    assert!(acked.len() > 2400, "survivors acknowledge w=2 writes");
    let before = ring_of(&url);
    let dead_share = partitions_of(&before, "node2");
    assert!(!dead_share.is_empty());

    // A fresh node joins; the join alone cannot finish (it waits for the dead node's data).
    let new = c.add_server();
    assert_eq!(new, 4);
    eventually(Duration::from_secs(30), "node1 knows node4", || {
        status(&url).is_some_and(|s| {
            s["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["node_id"] == "node4")
        })
    });

    let out = Command::new(BIN)
        .args(["admin", "replace", "node2", "node4", "--url", &url])
        .output()
        .expect("run riftkv admin replace");
    assert!(
        out.status.success(),
        "replace refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The change is visible at once on the node asked, with the replace named.
    let t = transfers(&url).expect("transfers while partitions move");
    assert_eq!(t["replacing"]["old"], "node2", "{t}");
    assert_eq!(t["replacing"]["new"], "node4", "{t}");
    assert_eq!(
        t["max_bytes_per_sec"].as_u64(),
        Some(LIMIT.parse().unwrap())
    );
    let (_, total) = done_of(&t);
    assert!(total > 0, "{t}");

    // The new node crashes in the middle of the move, then a source restarts: both resume.
    eventually(Duration::from_secs(60), "some data reaches node4", || {
        transfers(&url).is_none_or(|t| t["bytes_moved"].as_u64().unwrap_or(0) > 0)
    });
    let mid = transfers(&url);
    c.node(4).kill();
    c.node(4).start();
    c.node(3).terminate();
    c.node(3).start();
    if let Some(t) = &mid {
        let (done, total) = done_of(t);
        eprintln!("restarted node4 and node3 with {done}/{total} partitions moved");
    }

    c.wait_settled(3, Duration::from_secs(180));
    let after = ring_of(&url);
    assert_eq!(
        partitions_of(&after, "node4"),
        dead_share,
        "node4 owns exactly the partitions node2 owned"
    );
    assert!(partitions_of(&after, "node2").is_empty());
    for other in ["node1", "node3"] {
        assert_eq!(
            partitions_of(&after, other),
            partitions_of(&before, other),
            "{other} kept its partitions"
        );
    }
    assert!(transfers(&url).is_none(), "nothing moves once settled");

    // Every acknowledged write is on node4 (it replicates every key of a 3-node ring) and
    // reads back with its value. Four readers, so a loaded machine still gets through.
    let url4 = c.url(4);
    let problems: Vec<String> = std::thread::scope(|scope| {
        let readers: Vec<_> = acked
            .chunks(acked.len().div_ceil(4))
            .map(|keys| {
                let url4 = url4.as_str();
                scope.spawn(move || {
                    let mut problems = Vec::new();
                    for k in keys {
                        if local(url4, BUCKET, k).is_none() {
                            problems.push(format!("{k}: never reached node4"));
                            continue;
                        }
                        let r = get_json(url4, BUCKET, k, "?r=2");
                        if r.status() != 200 {
                            problems.push(format!("{k}: read answered {}", r.status()));
                            continue;
                        }
                        let v: Value = r.json().expect("read json");
                        if values_of(&v) != BTreeSet::from([value_of(k)]) {
                            problems.push(format!("{k}: wrong value"));
                        }
                    }
                    problems
                })
            })
            .collect();
        readers
            .into_iter()
            .flat_map(|r| r.join().expect("reader thread"))
            .collect()
    });
    assert!(
        problems.is_empty(),
        "{} of {} acknowledged keys are wrong, e.g. {:?}",
        problems.len(),
        acked.len(),
        &problems[..problems.len().min(5)]
    );
}
