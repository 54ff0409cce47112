//! A restarted node takes traffic only once it has caught up on hints: while its peers still
//! hold writes it missed, `/ready` answers 503 `catching_up`; once they report none, 200, and
//! every key then reads back through it at r=1.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const BUCKET: &str = "catchup";
const KEYS: usize = 2000;
const WRITERS: usize = 4;

/// Hints pending on the nodes that stayed up.
fn peer_hints(c: &Cluster) -> u64 {
    hints_pending(&c.url(1)) + hints_pending(&c.url(2))
}

#[test]
fn a_restarted_node_is_ready_only_once_its_peers_hold_no_hints_for_it() {
    let started = Instant::now();
    // A slow handoff interval: hints wait for the node's own ask, or for minutes.
    let opts = ClusterOpts {
        extra_args: vec![
            "--gossip-interval-ms".into(),
            "500".into(),
            "--handoff-interval-ms".into(),
            "4000".into(),
        ],
        ..ClusterOpts::default()
    };
    let mut c = Cluster::start(3, opts);
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, 1, Duration::from_secs(30));

    // n = 2 over three nodes: with node 3 down, its keys get a fallback that holds a hint.
    let r = client()
        .put(format!("{}/v1/buckets/{BUCKET}/props", c.url(1)))
        .header("content-type", "application/json")
        .body(r#"{"n": 2}"#)
        .send()
        .expect("props request");
    assert!(r.status().is_success(), "props: {}", r.status());
    eventually(Duration::from_secs(30), "every node to know n = 2", || {
        (1..=3).all(|i| {
            client()
                .get(format!("{}/v1/buckets/{BUCKET}/props", c.url(i)))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["n"] == 2)
        })
    });

    assert_eq!(c.node(3).terminate(), Some(0), "node3 did not stop cleanly");
    wait_unreachable(&c, 1, &["node3".to_string()]);
    wait_unreachable(&c, 2, &["node3".to_string()]);

    let urls = [c.url(1), c.url(2)];
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let urls = urls.clone();
            std::thread::spawn(move || {
                for k in (w..KEYS).step_by(WRITERS) {
                    let key = format!("k{k}");
                    let r = put(&urls[k % 2], BUCKET, &key, key.as_bytes(), "?w=2", None);
                    assert_eq!(r.status(), 204, "write of {key} failed");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let held = peer_hints(&c);
    assert!(held > 0, "no hints piled up for node3");

    c.node(3).start();
    let url3 = c.url(3);
    let mut catching_up_seen = None;
    let mut most_pending_seen = 0;
    let mut status_said_catching_up = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "node3 never became ready; peers hold {} hints\n{}",
            peer_hints(&c),
            tail(&c.servers[2].log(), 30)
        );
        let answer = client().get(format!("{url3}/ready")).send();
        if let Ok(r) = answer {
            let code = r.status().as_u16();
            let body: Value = r.json().unwrap_or(Value::Null);
            if code == 200 {
                break;
            }
            assert_eq!(code, 503, "unexpected /ready answer {body}");
            if body["reason"] == "catching_up" {
                let pending = body["hints_pending"].as_u64();
                assert!(pending.is_some(), "no hint count in {body}");
                most_pending_seen = most_pending_seen.max(pending.unwrap_or(0));
                catching_up_seen.get_or_insert(body);
            }
            status_said_catching_up |=
                status(&url3).is_some_and(|s| s["catching_up"] == Value::Bool(true));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = catching_up_seen.expect("node3 was never reported catching up");
    assert!(
        status_said_catching_up,
        "/v1/admin/status never showed catching_up"
    );
    assert!(
        most_pending_seen > 0,
        "/ready never reported the hints peers held while catching up"
    );
    eprintln!(
        "node3 caught up on {held} hints; /ready said up to {most_pending_seen} pending; first: {seen}"
    );
    assert_eq!(peer_hints(&c), 0, "ready while peers still hold hints");
    let status3 = status(&url3).expect("status of node3");
    assert_eq!(status3["catching_up"], Value::Bool(false), "{status3}");

    for k in 0..KEYS {
        let key = format!("k{k}");
        let r = get_json(&url3, BUCKET, &key, "?r=1");
        assert_eq!(r.status(), 200, "{key} missing through node3 at r=1");
        let v: Value = r.json().expect("json");
        let values = values_of(&v);
        assert!(
            values.contains(key.as_bytes()),
            "{key}: read {values:?} through node3"
        );
    }
    eprintln!("catch-up test took {:?}", started.elapsed());
}
