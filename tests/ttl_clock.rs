//! TTL under clock skew, with real processes: three `riftkv server`s, one of them started
//! under libfaketime with its clock 30 s behind. A `?ttl=2` value is visible at first; after
//! it expires every node answers 404 (GET with `r=1` against each node, and
//! `/v1/admin/local` shows no live copy), the skewed node within the same bound as the others.
//! Expiry is judged and stamped by cluster time (each node's clock corrected by the lower
//! median of its peers' offsets, which pings carry), so the lagging node neither shows an
//! expired value longer as a replica or as the key's owner, nor stamps a skewed expiry as a
//! coordinator (docs/operations.md, "TTL and clock skew").
//!
//! Needs libfaketime (`apt-get install faketime`, or `ops/setup-debian.sh`); without it the
//! test fails and says so.

mod common;

use common::{Cluster, ClusterOpts, client, local, preflist, seg, wait_all_reachable};
use std::path::Path;
use std::time::{Duration, Instant};

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// How far the skewed node's clock is behind.
const SKEW_SECS: i64 = 30;
const TTL_SECS: u64 = 2;
/// How long after the expiry every node, the skewed one included, must answer 404: the
/// reaper of the key's owner runs every 2 s here (ten gossip periods) with a 1 ms grace.
const BOUND: Duration = Duration::from_secs(8);
const SETTLE: Duration = Duration::from_secs(60);
const SKEWED: usize = 3;

/// Three nodes, node 3 running 30 s behind; reaping with a 1 ms grace.
fn skewed_cluster() -> Cluster {
    assert!(
        Path::new(FAKETIME_LIB).is_file(),
        "{FAKETIME_LIB} is missing: this test runs a node under libfaketime; install the \
         `faketime` package (apt-get install faketime, or run ops/setup-debian.sh)"
    );
    let mut opts = ClusterOpts::default();
    opts.extra_args
        .extend(["--tombstone-grace-ms".to_string(), "1".to_string()]);
    let mut c = Cluster::start(3, opts);
    c.wait_settled(3, SETTLE);
    let skewed = c.node(SKEWED);
    skewed.kill();
    skewed.env = vec![
        ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
        ("FAKETIME".into(), format!("-{SKEW_SECS}")),
    ];
    skewed.start();
    c.wait_settled(3, SETTLE);
    for i in 1..=3 {
        wait_all_reachable(&c, i, SETTLE);
    }
    // The skew took: the node's HTTP `Date` header is its wall clock.
    let lag = (clock_of(&c.url(1)) - clock_of(&c.url(SKEWED))).rem_euclid(86_400);
    assert!(
        (SKEW_SECS - 3..=SKEW_SECS + 3).contains(&lag),
        "node {SKEWED} should run {SKEW_SECS} s behind node 1, runs {lag} s behind \
         (is libfaketime working?)"
    );
    // The skewed node corrects its clock once it has heard both peers' clocks (a majority);
    // until then it is a lone node with its own time (docs/api.md, expiry).
    let deadline = Instant::now() + SETTLE;
    loop {
        let offset = clock_offset_ms(&c.url(SKEWED));
        if (SKEW_SECS * 1000 - 3000..=SKEW_SECS * 1000 + 3000).contains(&offset) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {SKEWED} should correct its clock by about {SKEW_SECS} s, adds {offset} ms"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c
}

/// The correction node `url` adds to its clock for expiry, from `/v1/admin/status`.
fn clock_offset_ms(url: &str) -> i64 {
    client()
        .get(format!("{url}/v1/admin/status"))
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|j| j["clock_offset_ms"].as_i64())
        .unwrap_or(0)
}

/// A node's wall-clock time of day in seconds, from the `Date` header of its answer
/// (`Wed, 02 Dec 2026 17:30:00 GMT`).
fn clock_of(url: &str) -> i64 {
    let r = client()
        .get(format!("{url}/v1/admin/status"))
        .send()
        .expect("status request");
    let date = r
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .expect("a Date header")
        .to_string();
    let hms: Vec<i64> = date
        .split_whitespace()
        .nth(4)
        .expect("a time of day in the Date header")
        .split(':')
        .map(|x| x.parse().expect("a number"))
        .collect();
    hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// Writes with `w=3`, so every replica holds the value when the PUT returns.
fn put_ttl(url: &str, key: &str) {
    let r = client()
        .put(format!("{url}/v1/kv/ttl/{}?ttl={TTL_SECS}&w=3", seg(key)))
        .header("content-type", "text/plain")
        .body(b"v".to_vec())
        .send()
        .expect("put request");
    assert!(r.status().is_success(), "PUT {key}: {}", r.status());
}

/// The status of a GET with `r=1` through node `url`.
fn get_r1(url: &str, key: &str) -> u16 {
    client()
        .get(format!("{url}/v1/kv/ttl/{}?r=1", seg(key)))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Whether node `url` holds a live (not deleted, not expired) copy of `key`.
fn has_live_copy(url: &str, key: &str) -> bool {
    local(url, "ttl", key).is_some_and(|v| {
        v["siblings"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["deleted"] == false))
    })
}

/// Polls every node (GET `r=1` and its own copy) every 100 ms until each has answered 404
/// and shown no live copy three polls in a row; returns, per node, when that started
/// (from `since`), or panics after `deadline`.
fn wait_gone_everywhere(c: &Cluster, key: &str, since: Instant, deadline: Instant) -> Vec<f64> {
    let mut gone_at: Vec<Option<Instant>> = vec![None; 3];
    let mut streak = [0u32; 3];
    loop {
        for i in 1..=3 {
            let gone = get_r1(&c.url(i), key) == 404 && !has_live_copy(&c.url(i), key);
            if gone {
                if streak[i - 1] == 0 {
                    gone_at[i - 1] = Some(Instant::now());
                }
                streak[i - 1] += 1;
            } else {
                streak[i - 1] = 0;
                gone_at[i - 1] = None;
            }
        }
        if streak.iter().all(|s| *s >= 3) {
            return gone_at
                .iter()
                .map(|t| t.map_or(0.0, |t| (t - since).as_secs_f64()))
                .collect();
        }
        if Instant::now() > deadline {
            let state: Vec<String> = (1..=3)
                .map(|i| {
                    format!(
                        "node{i}: GET r=1 {}, live copy {}",
                        get_r1(&c.url(i), key),
                        has_live_copy(&c.url(i), key)
                    )
                })
                .collect();
            panic!(
                "{key}: not gone everywhere {:.1} s after the PUT (owner {:?}): {}",
                (Instant::now() - since).as_secs_f64(),
                preflist(&c.url(1), "ttl", key).0.first(),
                state.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a `?ttl=2` value through node `coordinator`, to a key whose partition owner (whose
/// reaper removes the expired key from every replica) is the skewed node or not: visible
/// everywhere at first, then 404 on every node, the skewed one included, within `BOUND` of
/// the expiry.
fn expires_everywhere_within_the_bound(skewed_owns_it: bool, coordinator: usize) {
    let c = skewed_cluster();
    let skewed_id = c.servers[SKEWED - 1].id.clone();
    let key = (0..500)
        .map(|i| format!("key-{i}"))
        .find(|k| {
            let owner = preflist(&c.url(1), "ttl", k).0.first().cloned();
            owner.is_some_and(|o| (o == skewed_id) == skewed_owns_it)
        })
        .expect("a key with the wanted owner");
    let put_at = Instant::now();
    put_ttl(&c.url(coordinator), &key);
    for i in 1..=3 {
        let status = get_r1(&c.url(i), &key);
        assert!(
            status == 200 || put_at.elapsed() > Duration::from_secs(1),
            "{key}: node{i} should show the value right after the PUT, answered {status}"
        );
    }
    let expiry = put_at + Duration::from_secs(TTL_SECS);
    let gone = wait_gone_everywhere(&c, &key, put_at, expiry + BOUND);
    eprintln!("{key}: gone on node1..3 at {gone:?} s after the PUT (ttl {TTL_SECS} s)");
}

/// The skewed node is a replica, a correct node owns the partition: its reaper removes the
/// expired key from the skewed node too, within seconds of the expiry.
#[test]
fn a_lagging_replica_does_not_show_an_expired_value_longer() {
    expires_everywhere_within_the_bound(false, 1);
}

/// The skewed node owns the key's partition (and answers reads of it with `r=1` itself): by
/// cluster time it hides the value when the others do, although its own clock is 30 s behind.
/// (Before expiry used cluster time, it showed the value up to the skew longer.)
#[test]
fn a_lagging_owner_does_not_show_an_expired_value_longer() {
    expires_everywhere_within_the_bound(true, 1);
}

/// Written through the skewed node as coordinator: the expiry is stamped from cluster time, so
/// the value lives its TTL on every node, not 28 s less on the correct ones. (Before, the
/// correct nodes answered 404 at once.)
#[test]
fn a_lagging_coordinator_stamps_the_expiry_by_cluster_time() {
    expires_everywhere_within_the_bound(false, SKEWED);
}
