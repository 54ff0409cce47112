//! Staged ring changes: nodes started with `--staged-changes` compute and gossip the plan of a
//! join but move nothing until an operator commits it (`riftkv cluster plan`, `riftkv
//! cluster commit`, `GET /v1/admin/plan`, `POST /v1/admin/plan/commit`).

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const KEYS: usize = 60;

fn staged_opts() -> ClusterOpts {
    let mut o = ClusterOpts::default();
    o.extra_args.push("--staged-changes".into());
    o
}

fn plan_of(url: &str) -> Option<Value> {
    client()
        .get(format!("{url}/v1/admin/plan"))
        .send()
        .ok()?
        .json()
        .ok()
}

/// `POST /v1/admin/plan/commit`: the status and the JSON body.
fn commit(url: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{url}/v1/admin/plan/commit"))
        .send()
        .expect("commit request");
    let code = r.status().as_u16();
    (code, r.json().expect("commit answer is JSON"))
}

/// Runs the `riftkv` CLI: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run riftkv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The nodes the staged plan at `url` joins (changes the plan carries), sorted.
fn staged_joins(url: &str) -> Vec<String> {
    let Some(p) = plan_of(url).filter(|p| p["staged"] == true) else {
        return Vec::new();
    };
    let mut joins: Vec<String> = p["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["action"] == "join" && c["planned"] == true)
        .filter_map(|c| c["node"].as_str().map(str::to_string))
        .collect();
    joins.sort();
    joins
}

fn owners(url: &str) -> Vec<String> {
    ring_of(url)["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["owner"].as_str().expect("owner").to_string())
        .collect()
}

fn read_back(url: &str, key: &str) -> bool {
    let r = get_json(url, "staged", key, "");
    r.status() == 200
        && r.json::<Value>()
            .is_ok_and(|v| values_of(&v).contains(key.as_bytes()))
}

#[test]
fn a_staged_join_moves_nothing_until_committed() {
    let started = Instant::now();
    let mut c = Cluster::start(3, staged_opts());

    // Forming the cluster is a staged change too: both joins end up in one plan.
    let want = vec!["node2".to_string(), "node3".to_string()];
    eventually(
        Duration::from_secs(60),
        "both joins staged in one plan on every node",
        || (1..=3).all(|i| staged_joins(&c.url(i)) == want),
    );
    let (code, body) = commit(&c.url(2));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["staged"], false, "{body}");
    c.wait_settled(3, Duration::from_secs(90));

    // Nothing staged: 409, by the API and by the CLI (exit code 1).
    let (code, body) = commit(&c.url(1));
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "conflict");
    let url3 = c.url(3);
    let (exit, _, err) = cli(&["cluster", "commit", "--url", &url3]);
    assert_eq!(exit, Some(1), "{err}");
    assert!(err.contains("409") && err.contains("conflict"), "{err}");

    for i in 0..KEYS {
        let key = format!("k{i}");
        let r = put(&c.url(1 + i % 3), "staged", &key, key.as_bytes(), "", None);
        assert!(r.status().is_success(), "put {key}: {}", r.status());
    }
    let ring_before = owners(&c.url(1));

    // A fourth node joins: every node shows the staged plan, node4 from 0 to about a quarter.
    let four = c.add_server();
    eventually(
        Duration::from_secs(60),
        "every node shows node4's staged join",
        || (1..=four).all(|i| staged_joins(&c.url(i)) == vec!["node4".to_string()]),
    );
    let plan = plan_of(&c.url(1)).expect("plan");
    let node4 = &plan["partitions"]["node4"];
    assert_eq!(node4["before"], 0, "{plan}");
    let after = node4["after"].as_u64().expect("after");
    assert!((6..=10).contains(&after), "about 32/4 partitions: {plan}");
    assert!(!plan["transfers"].as_array().expect("transfers").is_empty());
    let version = status(&c.url(1)).expect("status")["ring_version"].clone();
    for i in 2..=four {
        let p = plan_of(&c.url(i)).expect("plan");
        assert_eq!(p["plan_id"], plan["plan_id"], "node{i}: {p}");
        assert_eq!(p["partitions"], plan["partitions"], "node{i}: {p}");
    }

    // A few gossip rounds (200 ms each) later nothing has moved.
    std::thread::sleep(Duration::from_secs(3));
    for i in 1..=four {
        let s = status(&c.url(i)).expect("status");
        assert_eq!(s["ring_version"], version, "node{i}: {s}");
        assert!(s.get("transfers").is_none(), "node{i} moves data: {s}");
        assert_eq!(s["staged_plan"], plan["plan_id"], "node{i}: {s}");
        assert_eq!(s["ring_settled"], false, "node{i}: {s}");
    }
    assert_eq!(status(&c.url(four)).expect("status")["owned_partitions"], 0);
    assert_eq!(owners(&c.url(1)), ring_before);
    assert_eq!(
        plan_of(&c.url(2)).expect("plan")["plan_id"],
        plan["plan_id"]
    );
    for i in 0..KEYS {
        let key = format!("k{i}");
        assert!(read_back(&c.url(1 + i % 4), &key), "{key} while staged");
    }

    // The CLI shows the table.
    let url4 = c.url(four);
    let (exit, out, err) = cli(&["cluster", "plan", "--url", &url4]);
    assert_eq!(exit, Some(0), "{err}");
    assert!(out.contains("staged"), "{out}");
    let row: Vec<String> = out
        .lines()
        .find(|l| l.starts_with("node4 "))
        .unwrap_or_else(|| panic!("no node4 row: {out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let want = [
        "node4".to_string(),
        "0".into(),
        after.to_string(),
        format!("+{after}"),
    ];
    assert_eq!(row, want);
    assert!(out.contains("transfers: "), "{out}");

    // Commit: the cluster settles with four members and every key reads back.
    let (exit, out, err) = cli(&["cluster", "commit", "--url", &c.url(2)]);
    assert_eq!(exit, Some(0), "{err}");
    assert!(out.contains("committed plan"), "{out}");
    // The commit is an admin action: one audit line on the node asked.
    let log = c.node(2).log();
    assert!(
        log.lines().any(|l| l.contains(" audit:")
            && l.contains("POST /v1/admin/plan/commit")
            && l.contains("status=202")),
        "no audit line for the commit: {}",
        tail(&log, 20)
    );
    c.wait_settled(4, Duration::from_secs(120));
    let ring_after = owners(&c.url(1));
    assert_eq!(
        ring_after.iter().filter(|o| *o == "node4").count() as u64,
        after
    );
    assert_eq!(plan_of(&c.url(4)).expect("plan")["pending"], false);
    for i in 0..KEYS {
        let key = format!("k{i}");
        assert!(read_back(&c.url(1 + i % 4), &key), "{key} after the commit");
    }
    eprintln!("staged join test took {:?}", started.elapsed());
}
