//! Multi-process tests of write identities: a node that forgets a key's history (its data dir
//! replaced by an empty one, a damaged record on disk, a hint it delivered and deleted) must
//! never name a new write like an old one. Real `riftkv server` processes; every acknowledged
//! write must survive as a value or a sibling.

mod common;

use common::*;
use riftkv_core::storage::{ObjectKey, RocksStorage, Storage};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(60);

fn set(v: &[&str]) -> BTreeSet<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn put_ok(url: &str, key: &str, value: &str, query: &str) {
    let r = put(url, "amnesia", key, value.as_bytes(), query, None);
    assert_eq!(r.status(), 204, "put {key}={value} via {url}{query}");
}

/// The live values a read of every replica returns, retried while replicas come back.
fn read_all(url: &str, key: &str) -> BTreeSet<Vec<u8>> {
    let mut last = String::new();
    for _ in 0..50 {
        let r = get_json(url, "amnesia", key, "?r=all");
        let code = r.status().as_u16();
        if code == 200 || code == 300 {
            let v: Value = r.json().expect("json");
            return values_of(&v);
        }
        last = format!("{code} {}", r.text().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("read of {key} never met r=all: {last}");
}

/// The issue's own reproduction: `w=all` through n, n's disk swapped for an empty one, a
/// write without context through n. Both writes were acknowledged and are concurrent.
#[test]
fn a_replaced_data_dir_keeps_both_acknowledged_writes() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, SETTLE);
    let (primaries, _) = preflist(&c.url(1), "amnesia", "wipe");
    let x = c.index_of(&primaries[0]);
    let u = c.url(x);
    put_ok(&u, "wipe", "v1", "?w=all");

    c.node(x).kill();
    let dir = c.node(x).data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe data dir");
    // The wiped node rejoins through another member.
    let seed = if x == 1 { 2 } else { 1 };
    let seed_peer = c.node(seed).peer.clone();
    let args = &mut c.node(x).args;
    if let Some(i) = args.iter().position(|a| a == "--seeds") {
        args[i + 1] = seed_peer;
    } else {
        args.push("--seeds".into());
        args.push(seed_peer);
    }
    c.node(x).start();
    c.wait_settled(3, SETTLE);
    wait_all_reachable(&c, x, SETTLE);

    put_ok(&u, "wipe", "v2", "?w=2");
    assert_eq!(read_all(&u, "wipe"), set(&["v1", "v2"]));
    assert!(
        c.node(x).log().contains("new incarnation"),
        "the wiped node says it starts a new incarnation"
    );
}

/// A record damaged on disk (checksum broken while the node is down), then a write through
/// that node: it coordinates over a missing copy and must take a new identity. A read then
/// repairs the damaged replica.
#[test]
fn a_damaged_record_keeps_both_writes_and_is_repaired_by_a_read() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, SETTLE);
    let (primaries, _) = preflist(&c.url(1), "amnesia", "dmg");
    let x = c.index_of(&primaries[0]);
    let y = c.index_of(&primaries[1]);
    let u = c.url(x);
    put_ok(&u, "dmg", "v1", "?w=all&dw=all");

    let partition = local(&u, "amnesia", "dmg").expect("x holds dmg")["partition"]
        .as_u64()
        .expect("partition") as u32;
    let k = ObjectKey::new(partition, b"amnesia".to_vec(), b"dmg".to_vec());
    for i in [x, y] {
        assert_eq!(c.node(i).terminate(), Some(0));
        let db = c.node(i).data_dir.join("db");
        let s = RocksStorage::open(&db).expect("open stopped node's db");
        assert!(s.get_object(&k).expect("read").is_some());
        let raw_key = riftkv_core::storage::keys::encode_object(&k).expect("key");
        let mut raw = s
            .raw_get_for_test(riftkv_core::storage::Cf::Objects, &raw_key)
            .expect("raw read")
            .expect("record");
        let last = raw.len() - 1;
        raw[last] ^= 0x5a;
        s.raw_put_for_test(riftkv_core::storage::Cf::Objects, &raw_key, &raw)
            .expect("damage");
        s.flush().expect("flush");
        drop(s);
        c.node(i).start();
    }
    c.wait_settled(3, SETTLE);
    wait_all_reachable(&c, x, SETTLE);
    assert!(
        local(&c.url(y), "amnesia", "dmg").is_none(),
        "y's copy reads as missing"
    );

    put_ok(&u, "dmg", "v2", "?w=2");
    assert_eq!(read_all(&u, "dmg"), set(&["v1", "v2"]));
    eventually(SETTLE, "read repair replaces y's damaged record", || {
        read_all(&u, "dmg");
        local(&c.url(y), "amnesia", "dmg").is_some_and(|v| values_of(&v) == set(&["v1", "v2"]))
    });
}

/// A fallback coordinates a key while every primary is down, delivers its hint when they
/// return and deletes it; in a second outage it coordinates the key again with no copy of it.
#[test]
fn a_fallback_coordinating_again_after_delivering_its_hint_keeps_both_writes() {
    let mut c = Cluster::start(5, ClusterOpts::default());
    c.wait_settled(5, SETTLE);
    let (primaries, _) = preflist(&c.url(1), "amnesia", "fb");
    let others: Vec<usize> = (1..=5)
        .filter(|i| !primaries.contains(&c.node(*i).id))
        .collect();
    let f = others[0];
    for value in ["v1", "v2"] {
        for id in &primaries {
            let i = c.index_of(id);
            c.node(i).kill();
        }
        for o in &others {
            wait_unreachable(&c, *o, &primaries);
        }
        put_ok(&c.url(f), "fb", value, "?w=1");
        for id in &primaries {
            let i = c.index_of(id);
            c.node(i).start();
        }
        wait_all_reachable(&c, f, SETTLE);
        eventually(SETTLE, "every hint delivered", || {
            (1..=5).all(|i| hints_pending(&c.url(i)) == 0)
        });
    }
    let u = c.url(c.index_of(&primaries[0]));
    assert_eq!(read_all(&u, "fb"), set(&["v1", "v2"]));
}
