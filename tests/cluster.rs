//! Multi-process cluster tests: real `riftkv server` processes on loopback.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn three_servers_settle_and_survive_sigkill_restart() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));

    let before = ring_of(&c.url(1));
    assert_eq!(before["ring_size"], 32);
    let partitions = before["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 32);
    // Every node owns a share and every preference list has 3 distinct nodes.
    for id in ["node1", "node2", "node3"] {
        let owned = partitions.iter().filter(|p| p["owner"] == id).count();
        assert!((10..=11).contains(&owned), "{id} owns {owned}");
    }
    for p in partitions {
        let mut pl: Vec<&str> = p["preference_list"]
            .as_array()
            .expect("preference list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(pl.len(), 3);
        pl.sort();
        pl.dedup();
        assert_eq!(pl.len(), 3);
    }
    // All nodes agree.
    for i in 2..=3 {
        assert_eq!(ring_of(&c.url(i))["partitions"], before["partitions"]);
    }

    c.node(2).kill();
    eventually(Duration::from_secs(20), "node2 seen unreachable", || {
        status(&c.url(1)).is_some_and(|s| {
            s["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["node_id"] == "node2" && m["reachable"] == false)
        })
    });
    c.node(2).start();
    c.wait_settled(3, Duration::from_secs(60));
    let after = ring_of(&c.url(2));
    assert_eq!(
        after["partitions"], before["partitions"],
        "same ring after restart"
    );
    assert_eq!(status(&c.url(2)).expect("status")["node_id"], "node2");
}

#[test]
fn a_server_of_another_cluster_is_refused() {
    let mut c = Cluster::start(2, ClusterOpts::default());
    c.wait_settled(2, Duration::from_secs(60));
    // A third process that names another cluster but seeds this one.
    let i = c.add_server();
    let pos = c.servers[i - 1]
        .args
        .iter()
        .position(|a| a == "--cluster-name")
        .expect("cluster-name arg");
    c.servers[i - 1].kill();
    c.servers[i - 1].args[pos + 1] = "someone-else".into();
    c.servers[i - 1].start();
    std::thread::sleep(Duration::from_secs(4));
    let st = status(&c.url(1)).expect("status");
    let members = st["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "the foreign node must not join: {st}");
    let ready = client()
        .get(format!("{}/ready", c.url(i)))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_ne!(ready, 200, "a refused node must not report ready");
    let log = c.servers[i - 1].log();
    assert!(
        log.contains("someone-else") || log.contains("cluster"),
        "the refusal is logged: {}",
        tail(&log, 20)
    );
}

#[test]
fn bad_configuration_exits_nonzero_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let run = server_exit;
    let d = data.to_string_lossy().to_string();
    let (code, err) = run(&["--ring-size", "100", "--data-dir", &d]);
    assert_ne!(code, Some(0));
    assert!(err.contains("power of two"), "{err}");
    let (code, err) = run(&["--api-addr", "not-an-address", "--data-dir", &d]);
    assert_ne!(code, Some(0));
    assert!(err.to_lowercase().contains("api"), "{err}");
}

/// A node that the network can reach never runs without a cluster secret: it stops before it
/// binds anything, with one line that says what to set. (192.0.2.0/24 is TEST-NET-1: nothing
/// is bound or sent there, the refusal comes first.)
#[test]
fn a_node_with_a_non_loopback_peer_address_and_no_secret_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let out = std::process::Command::new(BIN)
        .args(["server", "--peer-addr", "192.0.2.7:8800", "--data-dir"])
        .arg(&data)
        .env_remove("RIFTKV_CLUSTER_SECRET")
        .output()
        .expect("run riftkv");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line: {err}");
    assert!(
        lines[0].contains("192.0.2.7:8800")
            && lines[0].contains("loopback")
            && lines[0].contains("RIFTKV_CLUSTER_SECRET"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was written before the refusal");
}
